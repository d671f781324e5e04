"""ec2dbn: run GPU training jobs on AWS EC2 as code.

The package runs on the user's machine; the `trainer` package is what it ships to the instance. ec2dbn
also validates jobs with the trainer's own schema, so `trainer` must be the one installed with ec2dbn:
it is bound here, from ec2dbn's own folder, before anything can import a `trainer/` that happens to be in
the working directory or earlier on sys.path (`python -c`, a notebook, a script beside such a folder).
"""

import sys

__version__ = "0.1.0"


def _bind_trainer() -> None:
    if "trainer" in sys.modules:
        return  # already imported (e.g. by the caller, from the same installation)
    import importlib.util

    from ec2dbn.package_data import trainer_dir

    try:
        folder = trainer_dir()
    except FileNotFoundError:
        return  # a broken installation: the first use of the trainer says so
    spec = importlib.util.spec_from_file_location(
        "trainer", folder / "__init__.py", submodule_search_locations=[str(folder)]
    )
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    sys.modules["trainer"] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules["trainer"]
        raise


_bind_trainer()
