"""ec2dbn: run GPU training jobs on AWS EC2 as code.

The package runs on the user's machine; the `trainer` package is what it ships to the instance.
"""

__version__ = "0.1.0"
