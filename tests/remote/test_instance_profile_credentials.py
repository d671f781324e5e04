"""The fake instance gives its commands credentials the way EC2 does, and only then: an instance launched with
an instance profile serves its role's credentials (moto STS AssumeRole) from its IMDSv2, where boto3's own
chain finds them (AWS_EC2_METADATA_SERVICE_ENDPOINT); one launched without serves none; no keys of this
machine reach either."""

from __future__ import annotations

import getpass
import json
import subprocess
import sys
from pathlib import Path

import yaml

from ec2dbn.ssh.remote import Remote
from tests.support.fake_cloud import EC2_TRUST_POLICY, FakeCloudInit, running_cloud
from tests.support.moto_server import ACCOUNT_ID, MotoServer
from tests.support.sshd import SSH_KEYGEN

ROLE = "ec2dbn-e2e-us-east-1"  # the role and its instance profile, named as ec2dbn names them
#: Run on the instance with this machine's interpreter (only as a probe: it has boto3), in the instance's
#: session environment: which credentials does boto3's default chain find, and who is that for STS?
PROBE = (
    "import boto3, json; c = boto3.session.Session().get_credentials(); "
    "who = boto3.client('sts', region_name='us-east-1').get_caller_identity()['Arn'] if c else None; "
    "print(json.dumps([c and c.method, c and c.access_key, who]))"
)


def _key(folder: Path, name: str) -> tuple[Path, str]:
    path = folder / name
    subprocess.run([SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path, path.with_suffix(".pub").read_text().strip()


def test_an_instance_profile_gives_role_credentials_through_imds_and_none_without(
    aws: MotoServer, tmp_path: Path
) -> None:
    ec2, iam = aws.client("ec2"), aws.client("iam")
    iam.create_role(RoleName=ROLE, Path="/ec2dbn/", AssumeRolePolicyDocument=json.dumps(EC2_TRUST_POLICY))
    iam.create_instance_profile(InstanceProfileName=ROLE, Path="/ec2dbn/")
    iam.add_role_to_instance_profile(InstanceProfileName=ROLE, RoleName=ROLE)
    client_key, client_pub = _key(tmp_path, "client")
    ec2.import_key_pair(KeyName="probe", PublicKeyMaterial=client_pub.encode())
    host_key, host_pub = _key(tmp_path, "host")
    launch = {
        "ImageId": aws.images[("us-east-1", "ubuntu22")],
        "InstanceType": "t3.micro",
        "MinCount": 1,
        "MaxCount": 1,
        "KeyName": "probe",
        "UserData": yaml.safe_dump({"ssh_keys": {"ed25519_private": host_key.read_text()}}),
        "TagSpecifications": [
            {"ResourceType": "instance", "Tags": [{"Key": "ec2dbn:managed", "Value": "true"}]}
        ],
    }
    with_profile = ec2.run_instances(**launch, IamInstanceProfile={"Name": ROLE})
    without = ec2.run_instances(**launch)
    ids = [with_profile["Instances"][0]["InstanceId"], without["Instances"][0]["InstanceId"]]

    cloud = FakeCloudInit(aws, tmp_path / "instances", per_instance_ports=True)
    cloud.with_imds = True
    cloud.env = {"AWS_ENDPOINT_URL": aws.url}  # where the test's "AWS" is, as a real instance knows its own
    answers = {}
    with running_cloud(cloud):
        for iid in ids:
            cloud.wait_seen(iid)
            server = cloud.servers[iid]
            remote = Remote(server.host, server.port, getpass.getuser(), client_key, host_pub)
            try:
                answers[iid] = json.loads(remote.run(f"{sys.executable} -c {json.dumps(PROBE)}").stdout)
                env = remote.run("env").stdout
            finally:
                remote.close()
            assert f"AWS_EC2_METADATA_SERVICE_ENDPOINT={cloud.imds[iid].url}" in env
            assert "AWS_ACCESS_KEY_ID" not in env and "AWS_SECRET_ACCESS_KEY" not in env
    method, access_key, who = answers[ids[0]]
    creds = cloud.imds[ids[0]].credentials
    assert method == "iam-role" and creds is not None and access_key == creds.access_key_id
    assert who == f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/{ROLE}/{ids[0]}"
    assert answers[ids[1]] == [None, None, None]  # no profile: no credentials at all, as on EC2
    assert cloud.imds[ids[1]].credentials is None
