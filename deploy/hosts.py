"""What a SageMaker host can run: instance families, NVIDIA drivers per InferenceAmiVersion, the
image flavour per instance type, and the embedding-cache budget per instance memory.

Facts from botocore's ``ProductionVariantInferenceAmiVersion`` and the AWS page
"inference-gpu-drivers" (see /work/shared/reference/platform-facts.md).
"""

from __future__ import annotations

import re

#: NVIDIA driver of each InferenceAmiVersion.
AMI_DRIVERS: dict[str, int] = {
    "al2-ami-sagemaker-inference-gpu-2": 535,
    "al2-ami-sagemaker-inference-gpu-2-1": 535,
    "al2-ami-sagemaker-inference-gpu-3-1": 550,
    "al2023-ami-sagemaker-inference-gpu-4-1": 580,
}
#: SageMaker's default driver (InferenceAmiVersion "none") per instance family.
DEFAULT_DRIVERS: dict[str, int] = {"g4dn": 470, "g5": 470, "p3": 470, "p4d": 470, "p4de": 470,
                                   "g6": 535, "g6e": 535, "p5": 535}
#: The default InferenceAmiVersion of the GPU image per CUDA major.
DEFAULT_AMIS: dict[int, str] = {12: "al2-ami-sagemaker-inference-gpu-2-1", 13: "al2023-ami-sagemaker-inference-gpu-4-1"}
#: The smallest driver for the image's CUDA: CUDA 12 libraries run on 525+ through minor-version
#: compatibility and TensorRT 10 asks for r535+; CUDA 13 needs R580+.
MIN_DRIVERS: dict[int, int] = {12: 535, 13: 580}
CUDA_MAJORS = tuple(MIN_DRIVERS)
#: SageMaker's batch GPU AMI (botocore's TransformAmiVersion): drivers 470 and 535, none has R580.
TRANSFORM_GPU_AMI = "al2-ami-sagemaker-batch-gpu-535"
TRANSFORM_CUDA_MAJOR = 12
NO_AMI = "none"


def family(instance_type: str) -> str:
    """``ml.g4dn.xlarge`` -> ``g4dn``."""
    return instance_type.removeprefix("ml.").split(".", 1)[0]


def default_image_variant(instance_type: str) -> str:
    """``gpu`` for NVIDIA-looking families (ml.g*, ml.p*, and ml.inf*, refused later), else ``cpu``."""
    return "gpu" if instance_type.startswith(("ml.g", "ml.p", "ml.inf")) else "cpu"


def has_no_nvidia_gpu(instance_type: str) -> bool:
    """AWS Inferentia/Trainium types: accelerators the GPU image cannot use."""
    return instance_type.startswith(("ml.inf", "ml.trn"))


def ami_driver(ami_version: str, instance_type: str) -> int:
    """The NVIDIA driver of ``ami_version`` on ``instance_type`` (0 when unknown)."""
    if ami_version == NO_AMI:
        return DEFAULT_DRIVERS.get(family(instance_type), 0)
    return AMI_DRIVERS.get(ami_version, 0)


def image_uri_cuda(image_uri: str) -> int | None:
    """The CUDA major an image's tag names (``gpu-cu12-...``, ``gpu-cu13-...``), else None."""
    tag = image_uri.rsplit("/", 1)[-1]
    tag = tag.split(":", 1)[1] if ":" in tag else tag
    for major in (13, 12):
        if f"cu{major}" in tag:
            return major
    return None


def instance_memory_gib(instance_type: str) -> int:
    """Host memory in GiB (0 when unknown): vCPUs from the size, GiB per vCPU from the family
    (c: 2, m: 4, r: 8; g4dn.xlarge has 16 GiB for 4 vCPUs)."""
    parts = instance_type.removeprefix("ml.").split(".")
    if len(parts) != 2:
        return 0
    name, size = parts
    sized = re.fullmatch(r"(\d*)xlarge", size)
    if size == "large":
        vcpus = 2
    elif sized:
        vcpus = 4 * int(sized.group(1) or 1)
    else:
        return 0
    if name.startswith("c"):
        per_vcpu = 2
    elif name.startswith("m") or name in ("g4dn", "g5", "g6"):
        per_vcpu = 4
    elif name.startswith("r"):
        per_vcpu = 8
    else:
        return 0
    return vcpus * per_vcpu


def cache_budget(instance_type: str, image_variant: str) -> str:
    """The embedding cache budget (SAM_CACHE_BYTES): a quarter of host memory, 512 MiB to 8 GiB;
    1 GiB for unknown CPU types and 2 GiB for unknown GPU types. An entry is a 4 MiB embedding
    plus the upload."""
    memory_gib = instance_memory_gib(instance_type)
    if memory_gib == 0:
        return "2GiB" if image_variant == "gpu" else "1GiB"
    mib = min(max(memory_gib * 1024 // 4, 512), 8192)
    return f"{mib}MiB"
