pytest_plugins = ["tests.realparts"]
