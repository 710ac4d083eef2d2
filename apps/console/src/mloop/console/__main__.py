from mloop.console.main import main

main()
