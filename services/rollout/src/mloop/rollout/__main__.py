from mloop.rollout.main import main

main()
