import sys

from mloop.demo.main import main

sys.exit(main())
