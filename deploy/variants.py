"""Production variants: the plain settings make one; any VARIANT_B_* setting (but the weight)
makes an A/B test of two, A and B, each taking VARIANT_A_X / VARIANT_B_X where set and the plain X
otherwise (names: VARIANT_NAME and Challenger; archives <S3_KEY's folder>/<name>/model.tar.gz)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from deploy import hosts
from deploy.values import VARIANT_NAME_PATTERN, SettingsError, choice, integer, number, text, weight

#: The settings a variant may override (VARIANT_A_<X> / VARIANT_B_<X>, X without "VARIANT_"), with defaults.
PER_VARIANT_DEFAULTS: dict[str, str] = {
    "VARIANT_NAME": "Primary", "MODEL_DIR": "models/vit_b", "S3_KEY": "sam-climbing/model.tar.gz",
    "INSTANCE_TYPE": "ml.g4dn.xlarge", "IMAGE_URI": "", "CUDA_MAJOR": "12", "INFERENCE_AMI_VERSION": "",
    "IMAGE_VARIANT": "", "INITIAL_INSTANCE_COUNT": "1", "MIN_INSTANCES": "1", "MAX_INSTANCES": "2",
    "TARGET_INVOCATIONS_PER_INSTANCE": "20", "SAM_CACHE_BYTES": "",
}
WEIGHT_DEFAULTS = {"A": "90", "B": "10"}
CHALLENGER = "Challenger"


@dataclass(frozen=True)
class Variant:
    """One production variant, its settings resolved and checked."""

    key: str  # "" (single variant), "A" or "B"
    name: str
    model_dir: str
    s3_key: str
    instance_type: str
    image_uri: str
    cuda_major: int
    ami_version: str  # InferenceAmiVersion, or "none" (the family's default; CPU types)
    image_variant: str  # gpu or cpu
    initial_instance_count: int
    min_instances: int
    max_instances: int
    target_invocations_per_instance: float
    sam_cache_bytes: str  # "" = by instance memory
    weight: float

    @property
    def flavour(self) -> str:
        """cpu, gpu-cu12 or gpu-cu13: the image this variant runs."""
        return f"gpu-cu{self.cuda_major}" if self.image_variant == "gpu" else "cpu"

    def host_summary(self) -> str:
        """E.g. ``CUDA 12 image, InferenceAmiVersion al2-ami-...-2-1 (driver 535)`` or ``CPU image``."""
        if self.image_variant != "gpu":
            return "CPU image"
        driver = hosts.ami_driver(self.ami_version, self.instance_type)
        return f"CUDA {self.cuda_major} image, InferenceAmiVersion {self.ami_version} (driver {driver})"


def is_ab_test(environ: Mapping[str, str]) -> bool:
    return any(name.startswith("VARIANT_B_") and name != "VARIANT_B_WEIGHT" for name in environ)


def _raw(environ: Mapping[str, str], key: str, setting: str) -> tuple[str, str]:
    """(variable name, value) of ``setting`` for variant ``key``: its own where set, else the plain one."""
    if key:
        own = f"VARIANT_{key}_{setting.removeprefix('VARIANT_')}"
        if environ.get(own):
            return own, environ[own]
    return setting, text(environ, setting, PER_VARIANT_DEFAULTS[setting])


def variant_from_env(environ: Mapping[str, str], key: str, deploy_mode: str) -> Variant:
    """Variant ``key`` ("" for the plain settings) from the environment, checked (GPU host included)."""
    def get(setting: str) -> str:
        return _raw(environ, key, setting)[1]

    name = get("VARIANT_NAME")
    if key == "B" and not environ.get("VARIANT_B_NAME"):
        name = CHALLENGER
    if not VARIANT_NAME_PATTERN.fullmatch(name):
        raise SettingsError(f"variant name '{name}' must be letters, digits and inner hyphens (at most 63 characters)")
    s3_key = get("S3_KEY")
    if key and not environ.get(f"VARIANT_{key}_S3_KEY"):
        folder = s3_key.rsplit("/", 1)[0] if "/" in s3_key else ""
        s3_key = f"{folder}/{name}/model.tar.gz" if folder else f"{name}/model.tar.gz"
    instance_type = get("INSTANCE_TYPE")
    cuda_major = int(choice(_raw(environ, key, "CUDA_MAJOR")[0], get("CUDA_MAJOR"), tuple(map(str, hosts.CUDA_MAJORS))))
    image_variant = get("IMAGE_VARIANT") or hosts.default_image_variant(instance_type)
    choice(_raw(environ, key, "IMAGE_VARIANT")[0], image_variant, ("gpu", "cpu"))
    ami = get("INFERENCE_AMI_VERSION") or (hosts.DEFAULT_AMIS[cuda_major] if image_variant == "gpu" else hosts.NO_AMI)
    counts = {setting: integer(*_raw(environ, key, setting), low=low, high=high) for setting, low, high in (
        ("INITIAL_INSTANCE_COUNT", 1, 1000), ("MIN_INSTANCES", 0 if deploy_mode == "async" else 1, 1000),
        ("MAX_INSTANCES", 1, 1000))}
    if counts["MAX_INSTANCES"] < counts["MIN_INSTANCES"]:
        raise SettingsError(f"{_raw(environ, key, 'MAX_INSTANCES')[0]} ({counts['MAX_INSTANCES']}) is below "
                            f"{_raw(environ, key, 'MIN_INSTANCES')[0]} ({counts['MIN_INSTANCES']})")
    target = number(*_raw(environ, key, "TARGET_INVOCATIONS_PER_INSTANCE"), low=0, low_open=True)
    variant_weight = 1.0
    if key:
        variant_weight = weight(text(environ, f"VARIANT_{key}_WEIGHT", WEIGHT_DEFAULTS[key]),
                                "VARIANT_A_WEIGHT / VARIANT_B_WEIGHT must be numbers >= 0, not "
                                f"'{text(environ, f'VARIANT_{key}_WEIGHT', WEIGHT_DEFAULTS[key])}'")
    variant = Variant(key, name, get("MODEL_DIR"), s3_key, instance_type, get("IMAGE_URI"), cuda_major, ami,
                      image_variant, counts["INITIAL_INSTANCE_COUNT"], counts["MIN_INSTANCES"], counts["MAX_INSTANCES"],
                      target, get("SAM_CACHE_BYTES"), variant_weight)
    check_gpu_host(variant)
    return variant


def check_gpu_host(variant: Variant) -> None:
    """Refuse an image its host cannot start (wrong driver, wrong accelerator, wrong CUDA tag)."""
    if variant.image_variant != "gpu":
        if variant.ami_version != hosts.NO_AMI:
            raise SettingsError(f"INFERENCE_AMI_VERSION={variant.ami_version} is for GPU instance types, "
                                f"not {variant.instance_type}")
        return
    if hosts.has_no_nvidia_gpu(variant.instance_type):
        raise SettingsError(f"{variant.instance_type} has AWS Inferentia/Trainium chips, not NVIDIA GPUs: "
                            "the GPU image cannot run there")
    uri_cuda = hosts.image_uri_cuda(variant.image_uri) if variant.image_uri else None
    if uri_cuda is not None and uri_cuda != variant.cuda_major:
        raise SettingsError(f"IMAGE_URI {variant.image_uri} is a CUDA {uri_cuda} image but CUDA_MAJOR="
                            f"{variant.cuda_major}: set CUDA_MAJOR={uri_cuda}")
    driver = hosts.ami_driver(variant.ami_version, variant.instance_type)
    need = hosts.MIN_DRIVERS[variant.cuda_major]
    if driver == 0:
        raise SettingsError(f"unknown NVIDIA driver for InferenceAmiVersion '{variant.ami_version}' on "
                            f"{variant.instance_type}: use al2-ami-sagemaker-inference-gpu-2-1 (535), -3-1 (550) or "
                            "al2023-ami-sagemaker-inference-gpu-4-1 (580)")
    if driver < need:
        raise SettingsError(f"the CUDA {variant.cuda_major} image cannot start on {variant.instance_type} with "
                            f"InferenceAmiVersion {variant.ami_version} (driver {driver}): it needs driver {need} or "
                            "newer (README_SAGEMAKER.md, section 7)")


def variants_from_env(environ: Mapping[str, str], deploy_mode: str) -> tuple[Variant, ...]:
    """The endpoint's variants: one, or A and B of an A/B test; checked together."""
    if not is_ab_test(environ):
        return (variant_from_env(environ, "", deploy_mode),)
    if not environ.get("VARIANT_B_MODEL_DIR"):
        raise SettingsError("an A/B deploy needs VARIANT_B_MODEL_DIR (the challenger's exported model)")
    if deploy_mode != "realtime":
        raise SettingsError("A/B variants are for real-time endpoints: an asynchronous endpoint scales on its "
                            "endpoint-wide backlog")
    pair = (variant_from_env(environ, "A", deploy_mode), variant_from_env(environ, "B", deploy_mode))
    if pair[0].name == pair[1].name:
        raise SettingsError(f"both variants are named {pair[0].name}: set VARIANT_A_NAME or VARIANT_B_NAME")
    if pair[0].weight + pair[1].weight <= 0:
        raise SettingsError("VARIANT_A_WEIGHT and VARIANT_B_WEIGHT are both 0: no variant would get traffic")
    return pair
