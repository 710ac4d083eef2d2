from mloop.monitor.main import main

main()
