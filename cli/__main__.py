from modelform.cli import main

main()
