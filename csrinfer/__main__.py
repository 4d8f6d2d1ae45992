import sys

from csrinfer.cli import main

sys.exit(main())
