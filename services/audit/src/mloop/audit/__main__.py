from mloop.audit.main import main

main()
