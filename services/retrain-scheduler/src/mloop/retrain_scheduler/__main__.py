from mloop.retrain_scheduler.main import main

main()
