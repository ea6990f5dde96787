"""The engine: project file, schema, graph, plan, apply walk, views.

Plan and apply are pure functions of config, state and provider answers;
files, terminals and networks stay at the edges (the CLI and backends).
"""
