from remsim_supervisor.entry import main

main()
