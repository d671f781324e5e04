"""`python -m ec2dbn` is the same as the `ec2dbn` command.

`-m` puts the working directory first on sys.path (the console script does not): a `trainer/` folder
there would shadow the trainer installed with ec2dbn, which validates jobs here. It is dropped, unless
ec2dbn itself was imported from it (running from the repository's top).
"""

import os
import sys

from ec2dbn.package_data import package_dir

_first = os.path.realpath(sys.path[0] or os.curdir) if sys.path else ""
if _first == os.path.realpath(os.getcwd()) and _first != os.path.realpath(package_dir().parent):
    del sys.path[0]

from ec2dbn.cli import main  # noqa: E402  (after the sys.path fix)

sys.exit(main())
