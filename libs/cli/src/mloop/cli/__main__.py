from mloop.cli.main import main

main()
