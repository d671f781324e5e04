"""`python -m ec2dbn` is the same as the `ec2dbn` command."""

import sys

from ec2dbn.cli import main

sys.exit(main())
