"""`ec2dbn sweep`: many runs of one job at once — points of a grid or a random search, on shared capacity.

One train is one pipeline (ec2dbn.run.pipeline); a sweep runs one pipeline per point, each on a slot of the
sweep's capacity: one slot per GPU (CUDA_VISIBLE_DEVICES) or per CPU instance of an EC2 Fleet the sweep
owns, or one of K worker processes here (`--local --parallel K`). The sweep makes no cloud calls of its
own: the fleet comes from ec2dbn.aws.fleet_launch, each point's run from the pipeline.

    points.py     the points: --grid, --random/--sample, a `sweep:` section; each validated like a job
    prepare.py    from the command line to a sweep: points grouped by hardware, fleets sized, priced
    record.py     results/<sweep-id>/sweep.json: the points, their state, the capacity, the cost
    budget.py     --max-cost: what the sweep has committed to spend, and whether one more point fits
    fleet.py      the EC2 side: one fleet per kind of hardware, its instances made ready, replacements
    slots.py      slots: handing them to points, taking them back, losing them with their instance
    on_ec2.py     a point's pipeline on a fleet's slot; the fleets torn down at the end
    on_local.py   a point as a local trainer process (--local --parallel K), BLAS threads divided
    scheduler.py  the loop: free slot → next point, a lost instance's points elsewhere, Ctrl-C, the end
    live.py       what each point is doing (epoch, loss, accuracy, state), for the live table
    summary.py    summary.md and the plot
    logs.py       `ec2dbn logs SWEEP_ID/POINT`
"""
