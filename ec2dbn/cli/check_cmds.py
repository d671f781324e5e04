"""Verbs for a first time on AWS: `check` (can the stack launch here?) and `iam-policy` (what to grant)."""

from __future__ import annotations

import click

from ec2dbn import aws
from ec2dbn.aws import iam_policy
from ec2dbn.cli import cli
from ec2dbn.cli.options import image_option, json_option, region_option, stack_option
from ec2dbn.cli.output import stdout, styled
from ec2dbn.spec.overrides import load_for_launch
from ec2dbn.stack import preflight
from trainer.strict_json import dumps

_MARK = {"ok": ("✓", "green"), "fail": ("✗", "red"), "warn": ("!", "yellow"), "skip": ("-", "dim")}


@cli.command()
@stack_option
@region_option("Region to check (else $AWS_REGION, else the stack's).")
@image_option("Image to check (dlami-ubuntu22, ubuntu22, ubuntu24, ami-...).")
@json_option()
def check(stack_ref: str | None, region: str | None, image: str | None, as_json: bool) -> int:
    """Check that the stack can launch from these credentials in this region: credentials and account,
    region, instance types, vCPU quotas, VPC and subnets, zones, image, spot price, the Spot service-linked
    role, the run store. Creates nothing.

    \b
    Exit code 0 when the stack can launch, 1 when it cannot (every ✗ says how to fix it).
    Examples:
      ec2dbn check
      ec2dbn check --stack g5-spot --region us-west-2 --json
      ec2dbn check --image ubuntu24
    """
    stack = load_for_launch(stack_ref, region=region, image=image)
    report = preflight.run(stack)
    if as_json:
        click.echo(dumps(report.as_json(), indent=2))
        return 0 if report.launchable else 1
    stdout.print(styled(("ec2dbn check", "bold"), f": stack {stack.name} in {stack.region}"))
    width = max(len(c.name) for c in report.checks)
    for c in report.checks:
        stdout.print(styled(_MARK[c.status], f" {c.name:<{width}}  {c.detail}"))
        if c.fix and c.status in ("fail", "warn"):
            stdout.print(styled(f"  {'':<{width}}  ", ("fix:", "bold"), f" {c.fix}"))
    verdict = "can launch" if report.launchable else "cannot launch: fix each ✗ above"
    stdout.print(styled(f"stack {stack.name} {verdict}"))
    return 0 if report.launchable else 1


@cli.command("iam-policy")
@click.option(
    "--partition",
    type=click.Choice(iam_policy.PARTITIONS),
    default="aws",
    show_default=True,
    help="AWS partition of the ARNs (aws-cn for China, aws-us-gov for GovCloud).",
)
@click.option(
    "--boundary",
    is_flag=True,
    help="Print the permissions boundary of the instances' roles instead (an administrator creates it once).",
)
@click.option(
    "--bucket",
    "buckets",
    multiple=True,
    metavar="NAME",
    help="With --boundary: a bucket a stack names in `store: s3://NAME/...` (repeatable).",
)
def iam_policy_cmd(partition: str, boundary: bool, buckets: tuple[str, ...]) -> int:
    """Print the least-privilege IAM policy (JSON) ec2dbn needs: EC2 scoped to resources tagged
    ec2dbn:managed=true, the public AMI-alias SSM parameters, Service Quotas, STS and Price List reads, the
    Spot service-linked role (created by a first spot request), the run store's ec2dbn-runs-* buckets and
    the instances' roles under /ec2dbn/ (passed to EC2 only, always with the boundary below). One managed
    policy (under 6,144).

    With --boundary: the permissions boundary every instance role carries (the most an instance may do:
    the run store's objects, terminating ec2dbn's instances). An IAM administrator creates it once per
    account; ec2dbn's policy cannot create or change it.

    \b
    Examples (attach the policy to the IAM user ec2dbn runs as; the boundary as an administrator):
      ec2dbn iam-policy > ec2dbn-policy.json
      aws iam create-policy --policy-name ec2dbn --policy-document file://ec2dbn-policy.json
      aws iam attach-user-policy --user-name YOU --policy-arn arn:aws:iam::ACCOUNT:policy/ec2dbn
      ec2dbn iam-policy --boundary > boundary.json
      aws iam create-policy --path /ec2dbn/ --policy-name ec2dbn-run-boundary \\
          --policy-document file://boundary.json
    """
    if buckets and not boundary:
        raise click.UsageError("--bucket goes with --boundary")
    for name in buckets:
        aws.parse_store_uri(f"s3://{name}")  # a name S3 would refuse: one line, exit 2
    document = iam_policy.boundary_policy(partition, buckets) if boundary else iam_policy.policy(partition)
    click.echo(dumps(document, indent=2))
    return 0
