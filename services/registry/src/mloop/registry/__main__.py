from mloop.registry.main import main

main()
