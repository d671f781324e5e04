"""Image aliases resolved through AWS's public SSM parameters, and the facts launch needs about an AMI.

Canonical and the Deep Learning AMI team publish "latest" AMI ids per region as public SSM parameters,
so an alias always means the current patched image without ec2dbn shipping AMI ids that go stale.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from ec2dbn.aws.errors import aws_errors, error_code
from ec2dbn.aws.session import Aws
from ec2dbn.errors import CloudError, ConfigError, Ec2dbnError

#: alias -> public SSM parameter holding the region's current AMI id.
_DLAMI = "/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-ubuntu-{}/latest/ami-id"
SSM_PARAMETERS = {
    # Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu 22.04): NVIDIA driver + CUDA preinstalled.
    "dlami-ubuntu22": _DLAMI.format("22.04"),
    "dlami-ubuntu24": _DLAMI.format("24.04"),
    # Canonical's Ubuntu Server (24.04 images are published for gp3 only).
    "ubuntu22": "/aws/service/canonical/ubuntu/server/22.04/stable/current/amd64/hvm/ebs-gp2/ami-id",
    "ubuntu24": "/aws/service/canonical/ubuntu/server/24.04/stable/current/amd64/hvm/ebs-gp3/ami-id",
}


@dataclass(frozen=True)
class Image:
    """A resolved AMI. `root_size_gb` is its root snapshot's size (GiB): the volume can't be smaller."""

    image_id: str
    requested: str
    parameter: str | None
    name: str
    architecture: str
    root_device_name: str
    root_size_gb: int | None
    #: The bake hash when this is a bake of the stack (`ec2dbn bake`), else None.
    bake_hash: str | None = None


def resolve(aws: Aws, image: str) -> Image:
    """The AMI an alias or `ami-` id means in the region. Raises CloudError/ConfigError when there is none."""
    parameter = SSM_PARAMETERS.get(image)
    image_id = image
    if parameter is not None:
        try:
            with aws_errors(aws.region, f"looking up image {image}"):
                image_id = str(aws.ssm.get_parameter(Name=parameter)["Parameter"]["Value"])
        except CloudError as exc:
            cause = exc.__cause__
            if isinstance(cause, ClientError) and error_code(cause) == "ParameterNotFound":
                raise CloudError(
                    f"image {image}: the public SSM parameter {parameter} does not exist in {aws.region}; "
                    "pick another image alias or an ami- id (--image)"
                ) from None
            raise
    try:
        with aws_errors(aws.region, f"describing image {image_id}"):
            images = aws.ec2.describe_images(ImageIds=[image_id])["Images"]
    except Ec2dbnError as exc:
        cause = exc.__cause__
        if isinstance(cause, ClientError) and error_code(cause).startswith("InvalidAMIID"):
            images = []
        else:
            raise
    if not images:
        raise ConfigError(
            f"image {image_id} does not exist in {aws.region} (AMIs are regional): use an alias "
            f"({', '.join(SSM_PARAMETERS)}) or an ami- id from {aws.region} (--image)"
        )
    return image_record(images[0], image, parameter)


def image_record(desc: dict[str, Any], requested: str, parameter: str | None) -> Image:
    """The launch facts of a described image (`requested`: what the stack named)."""
    root = desc.get("RootDeviceName") or "/dev/sda1"
    size = None
    for bdm in desc.get("BlockDeviceMappings", []):
        if bdm.get("DeviceName") == root and "Ebs" in bdm:
            size = bdm["Ebs"].get("VolumeSize")
    return Image(
        image_id=desc["ImageId"],
        requested=requested,
        parameter=parameter,
        name=desc.get("Name", ""),
        architecture=desc.get("Architecture", "x86_64"),
        root_device_name=root,
        root_size_gb=int(size) if size else None,
    )
