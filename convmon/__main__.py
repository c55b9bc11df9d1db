from convmon.monitor.cli import main

main()
