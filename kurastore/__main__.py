import sys

from kurastore.cli import main

sys.exit(main())
