"""A bake: the pipeline that images a bootstrapped instance (its inputs' hash is ec2dbn.spec.bake_inputs,
which the plan phase needs too)."""
