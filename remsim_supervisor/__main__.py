from remsim_supervisor.cli import main

main()
