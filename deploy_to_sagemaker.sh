#!/usr/bin/env bash
# Deploy the SAM hold-extraction endpoint to SageMaker with the AWS CLI.
#
#   ./deploy_to_sagemaker.sh [--dry-run] [--env-file FILE] [--mode realtime|async] [VAR=value ...] COMMAND...
#
# Commands (run in the order given; `all` = check package image model config endpoint autoscale test):
#   check      AWS CLI, credentials, bucket, role, GPU driver vs the image's CUDA (and docker, if the image is built here)
#   package    model.tar.gz from MODEL_DIR, uploaded to s3://S3_BUCKET/S3_KEY (skipped if unchanged)
#   image      build Dockerfile.sagemaker and push it to ECR (creates the repository); skipped if IMAGE_URI is set
#   model      a new, uniquely named SageMaker model
#   config     a new endpoint config (real-time, or asynchronous with S3 output) for that model
#   endpoint   create the endpoint, or update it in place (blue/green: autoscaling deregistered, instance
#              count kept, autoscaling registered again), and wait
#   autoscale  target tracking (realtime: invocations per instance; async: backlog, down to zero)
#   test       invoke the endpoint through sagemaker_client.py with a 12 MP sample wall photo; fail on a wrong answer
#   status     endpoint, variants and their traffic weights, scaling, and where its logs and metrics are
#   delete     scaling policies, endpoint, and every endpoint config and model this tool made for it
#
# A/B tests (two production variants on one endpoint; set any VARIANT_B_* setting, see README_SAGEMAKER.md):
#   shift VARIANT:WEIGHT...   set traffic weights (UpdateEndpointWeightsAndCapacities) and wait
#   promote VARIANT           end the test: VARIANT takes all traffic, the other variant is removed
#
# Batch transform (one request file per photo: .zip as the asynchronous endpoint takes, or .json):
#   batch INPUT_S3_PREFIX OUTPUT_S3_PREFIX   run a transform job over every file under the input
#              prefix, wait, and report; each answer lands at OUTPUT_S3_PREFIX<file>.out
#
# Settings come from the environment, then --env-file (default .env, if present), then VAR=value
# arguments; nothing needs editing here. --dry-run prints the AWS calls that would change
# something (read-only calls still run, so it needs credentials).
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DRY_RUN=0
AUTOSCALE_DONE=0
ENV_FILE=".env"
COMMANDS=()
OVERRIDES=()
SHIFT_WEIGHTS=()
PROMOTE_VARIANT=""
BATCH_INPUT=""
BATCH_OUTPUT=""

# The comment block at the top of this file, without its '#'s.
usage() { awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "$0"; }
die() { echo "error: $*" >&2; exit 1; }
info() { echo "[deploy] $*" >&2; }

while [[ $# -gt 0 ]]; do
  case "$1" in
    --dry-run) DRY_RUN=1 ;;
    --env-file) ENV_FILE="${2:?--env-file needs a file}"; shift ;;
    --mode) OVERRIDES+=("DEPLOY_MODE=${2:?--mode needs realtime or async}"); shift ;;
    -h|--help) usage; exit 0 ;;
    *=*) OVERRIDES+=("$1") ;;
    check|package|image|model|config|endpoint|autoscale|test|status|delete|all) COMMANDS+=("$1") ;;
    shift)
      COMMANDS+=(shift)
      while [[ $# -gt 1 && "$2" == *:* && "$2" != *=* ]]; do SHIFT_WEIGHTS+=("$2"); shift; done
      [[ ${#SHIFT_WEIGHTS[@]} -gt 0 ]] || die "shift needs VARIANT:WEIGHT pairs, e.g. shift Primary:50 Challenger:50" ;;
    promote)
      [[ $# -gt 1 && "$2" != *=* ]] || die "promote needs the name of the variant that wins, e.g. promote Challenger"
      COMMANDS+=(promote); PROMOTE_VARIANT="$2"; shift ;;
    batch)
      [[ $# -gt 2 && "$2" == s3://* && "$3" == s3://* ]] \
        || die "batch needs INPUT_S3_PREFIX OUTPUT_S3_PREFIX, e.g. batch s3://my-bucket/batch/input/ s3://my-bucket/batch/output/"
      COMMANDS+=(batch); BATCH_INPUT="$2"; BATCH_OUTPUT="$3"; shift 2 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
  shift
done
[[ ${#COMMANDS[@]} -gt 0 ]] || { usage >&2; die "no command given"; }

if [[ -f "$ENV_FILE" ]]; then
  set -a
  # shellcheck disable=SC1090
  source "$ENV_FILE"
  set +a
fi
for assignment in "${OVERRIDES[@]+"${OVERRIDES[@]}"}"; do
  export "${assignment?}"
done

: "${AWS_REGION:=${AWS_DEFAULT_REGION:-us-east-1}}"
export AWS_REGION AWS_DEFAULT_REGION="$AWS_REGION"
: "${ENDPOINT_NAME:=sam-climbing-endpoint}"
: "${MODEL_NAME:=sam-climbing-model}"
: "${VARIANT_NAME:=Primary}"
: "${INSTANCE_TYPE:=ml.g4dn.xlarge}"
: "${DEPLOY_MODE:=realtime}"
: "${MODEL_DIR:=models/vit_b}"
: "${S3_KEY:=sam-climbing/model.tar.gz}"
: "${ECR_REPOSITORY:=sam-climbing}"
: "${INITIAL_INSTANCE_COUNT:=1}"
: "${MIN_INSTANCES:=1}"
: "${MAX_INSTANCES:=2}"
: "${TARGET_INVOCATIONS_PER_INSTANCE:=20}"
: "${ASYNC_MAX_CONCURRENT:=2}"
: "${ASYNC_MIN_INSTANCES:=0}"
: "${ASYNC_TARGET_BACKLOG_PER_INSTANCE:=5}"
: "${ASYNC_OUTPUT_PREFIX:=sam-climbing/async}"
: "${STARTUP_HEALTH_TIMEOUT_S:=600}"
: "${WAIT_TIMEOUT_S:=1800}"
: "${POLL_S:=15}"
: "${STATE_DIR:=.deploy}"
: "${ARTIFACTS_DIR:=model_artifacts}"
: "${PYTHON:=python3}"
: "${SNS_SUCCESS_TOPIC:=}"
: "${SNS_ERROR_TOPIC:=}"
: "${IMAGE_URI:=}"
: "${CUDA_MAJOR:=12}"
: "${ROLE_ARN:=}"
: "${S3_BUCKET:=}"
: "${VARIANT_A_WEIGHT:=90}"
: "${VARIANT_B_WEIGHT:=10}"
: "${BATCH_MAX_PAYLOAD_MB:=25}"
: "${BATCH_MAX_CONCURRENT:=4}"
: "${BATCH_INSTANCE_COUNT:=1}"
: "${BATCH_INVOCATION_TIMEOUT_S:=300}"
: "${BATCH_MAX_RETRIES:=1}"
: "${BATCH_CONTENT_TYPE:=}"
: "${BATCH_ACCEPT:=}"
TAG_KEY="sam-holds:endpoint"
STATE_FILE="$STATE_DIR/$ENDPOINT_NAME.state"

case "$DEPLOY_MODE" in realtime|async) ;; *) die "DEPLOY_MODE must be realtime or async, not '$DEPLOY_MODE'" ;; esac

# ---- production variants -----------------------------------------------------------------
# One variant by default: the plain settings (VARIANT_NAME, MODEL_DIR, INSTANCE_TYPE, ...). Any
# VARIANT_B_* setting makes it an A/B test of two variants, A and B: each takes VARIANT_A_X /
# VARIANT_B_X where set and the plain X otherwise (names: VARIANT_NAME and Challenger; model
# archives: <S3_KEY's folder>/<variant name>/model.tar.gz; weights VARIANT_A_WEIGHT/VARIANT_B_WEIGHT).
PER_VARIANT=(VARIANT_NAME MODEL_DIR S3_KEY INSTANCE_TYPE IMAGE_URI CUDA_MAJOR INFERENCE_AMI_VERSION IMAGE_VARIANT
             INITIAL_INSTANCE_COUNT MIN_INSTANCES MAX_INSTANCES TARGET_INVOCATIONS_PER_INSTANCE SAM_CACHE_BYTES)
: "${IMAGE_VARIANT:=}" "${INFERENCE_AMI_VERSION:=}" "${SAM_CACHE_BYTES:=}"
for setting in "${PER_VARIANT[@]}"; do
  printf -v "BASE_$setting" '%s' "${!setting}"
done
VARIANT_IDS=("")
if compgen -v VARIANT_B_ | grep -qv '^VARIANT_B_WEIGHT$'; then
  VARIANT_IDS=(A B)
  [[ -n "${VARIANT_B_MODEL_DIR:-}" ]] || die "an A/B deploy needs VARIANT_B_MODEL_DIR (the challenger's exported model)"
  [[ "$DEPLOY_MODE" == realtime ]] \
    || die "A/B variants are for real-time endpoints: an asynchronous endpoint scales on its endpoint-wide backlog"
fi
ab_test() { [[ ${#VARIANT_IDS[@]} -gt 1 ]]; }
VARIANT_PATTERN='^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$'
WEIGHT_PATTERN='^[0-9]+([.][0-9]+)?$'

# Make variant ID (A, B, or "" for the plain settings) the current one: its settings in the plain
# variables, then the image variant, CUDA and InferenceAmiVersion derived and checked.
use_variant() {
  local id="$1" setting per
  for setting in "${PER_VARIANT[@]}"; do
    per="BASE_$setting"
    if [[ -n "$id" ]]; then
      per="VARIANT_${id}_${setting#VARIANT_}"
      [[ -n "${!per:-}" ]] || per="BASE_$setting"
    fi
    printf -v "$setting" '%s' "${!per}"
  done
  VARIANT_WEIGHT=1
  if [[ -n "$id" ]]; then
    local name_setting="VARIANT_${id}_NAME" key_setting="VARIANT_${id}_S3_KEY" weight_setting="VARIANT_${id}_WEIGHT"
    [[ "$id" == B && -z "${!name_setting:-}" ]] && VARIANT_NAME=Challenger
    if [[ -z "${!key_setting:-}" ]]; then
      local folder="${BASE_S3_KEY%/*}"
      [[ "$folder" == "$BASE_S3_KEY" ]] && folder=""
      S3_KEY="${folder:+$folder/}$VARIANT_NAME/model.tar.gz"
    fi
    VARIANT_WEIGHT="${!weight_setting}"
  fi
  derive_image_settings
}

derive_image_settings() {
  if [[ -z "$IMAGE_VARIANT" ]]; then
    case "$INSTANCE_TYPE" in ml.g*|ml.p*|ml.inf*) IMAGE_VARIANT=gpu ;; *) IMAGE_VARIANT=cpu ;; esac
  fi
  case "$CUDA_MAJOR" in 12|13) ;; *) die "CUDA_MAJOR must be 12 or 13, not '$CUDA_MAJOR'" ;; esac
  # InferenceAmiVersion (GPU instance types): the default AMI's driver runs the image's CUDA.
  if [[ -z "$INFERENCE_AMI_VERSION" ]]; then
    if [[ "$IMAGE_VARIANT" == gpu ]]; then
      case "$CUDA_MAJOR" in
        12) INFERENCE_AMI_VERSION=al2-ami-sagemaker-inference-gpu-2-1 ;;
        13) INFERENCE_AMI_VERSION=al2023-ami-sagemaker-inference-gpu-4-1 ;;
      esac
    else
      INFERENCE_AMI_VERSION=none
    fi
  fi
}

# The variants' names, weights and settings are checked once, before anything runs.
if ab_test; then
  use_variant A; NAME_A="$VARIANT_NAME"
  use_variant B; NAME_B="$VARIANT_NAME"
  [[ "$NAME_A" != "$NAME_B" ]] || die "both variants are named $NAME_A: set VARIANT_A_NAME or VARIANT_B_NAME"
  for weight in "$VARIANT_A_WEIGHT" "$VARIANT_B_WEIGHT"; do
    [[ "$weight" =~ $WEIGHT_PATTERN ]] || die "VARIANT_A_WEIGHT / VARIANT_B_WEIGHT must be numbers >= 0, not '$weight'"
  done
  awk -v a="$VARIANT_A_WEIGHT" -v b="$VARIANT_B_WEIGHT" 'BEGIN { exit !(a + b > 0) }' \
    || die "VARIANT_A_WEIGHT and VARIANT_B_WEIGHT are both 0: no variant would get traffic"
fi
for id in "${VARIANT_IDS[@]}"; do
  use_variant "$id"
  [[ "$VARIANT_NAME" =~ $VARIANT_PATTERN ]] \
    || die "variant name '$VARIANT_NAME' must be letters, digits and inner hyphens (at most 63 characters)"
done
use_variant ""

# Dry-run lines go to the original stdout (fd 3), even where AWS output is discarded.
exec 3>&1

# Run a mutating AWS call, or print it under --dry-run.
aws_change() {
  if [[ "$DRY_RUN" == 1 ]]; then
    { printf 'DRY-RUN: aws'; printf ' %q' "$@"; printf '\n'; } >&3
  else
    aws "$@"
  fi
}

# Names made by one step for the next (model -> config -> endpoint); kept in memory under --dry-run.
declare -A DRY_STATE=()
state_get() {
  if [[ "$DRY_RUN" == 1 && -n "${DRY_STATE[$1]:-}" ]]; then echo "${DRY_STATE[$1]}"; return 0; fi
  [[ -f "$STATE_FILE" ]] && sed -n "s/^$1=//p" "$STATE_FILE" | tail -n 1
  return 0
}
state_set() {
  if [[ "$DRY_RUN" == 1 ]]; then DRY_STATE[$1]="$2"; return 0; fi
  mkdir -p "$STATE_DIR"
  echo "$1=$2" >> "$STATE_FILE"
}

# State keys: the plain ones for one variant (unchanged), per variant / image flavour in an A/B test.
model_key() { if ab_test; then echo "MODEL_$VARIANT_NAME"; else echo MODEL; fi; }
image_key() { if ab_test; then echo "IMAGE_URI_$(image_flavour)"; else echo IMAGE_URI; fi; }
# cpu, gpu-cu12 or gpu-cu13: the image a variant runs.
image_flavour() { if [[ "$IMAGE_VARIANT" == gpu ]]; then echo "gpu-cu$CUDA_MAJOR"; else echo cpu; fi; }

require_bucket() { [[ -n "$S3_BUCKET" ]] || die "S3_BUCKET is not set (environment, .env or S3_BUCKET=... argument)"; }

NO_CREDENTIALS="no usable AWS credentials (aws configure, or AWS_PROFILE / AWS_ACCESS_KEY_ID)"
account_id() {
  local account
  account="$(aws sts get-caller-identity --query Account --output text 2>/dev/null)" && [[ -n "$account" ]] \
    || die "$NO_CREDENTIALS"
  echo "$account"
}

role_arn() {
  if [[ -z "$ROLE_ARN" ]]; then
    local account
    account="$(account_id)"
    ROLE_ARN="arn:aws:iam::$account:role/SageMakerExecutionRole"
  fi
  echo "$ROLE_ARN"
}

needs_image_build() { [[ -z "$IMAGE_URI" ]]; }

# The endpoint's status, or Missing when SageMaker says it does not exist; any other failure
# (credentials, permissions, network) stops the script with the error. Use as an assignment
# (status="$(endpoint_status)") so that the stop propagates.
endpoint_status() {
  local out
  if out="$(aws sagemaker describe-endpoint --endpoint-name "$ENDPOINT_NAME" --query EndpointStatus --output text 2>&1)"; then
    echo "$out"
  elif [[ "$out" == *"Could not find endpoint"* ]]; then
    echo "Missing"
  else
    die "cannot describe endpoint $ENDPOINT_NAME: $(echo "$out" | tr -s '\n' ' ' | sed 's/^ *//; s/ *$//')"
  fi
}

# SageMaker's NVIDIA driver per InferenceAmiVersion (botocore's ProductionVariantInferenceAmiVersion
# and the AWS page "inference-gpu-drivers"); "none" is the instance family's default.
ami_driver() {
  case "$1" in
    al2-ami-sagemaker-inference-gpu-2|al2-ami-sagemaker-inference-gpu-2-1) echo 535 ;;
    al2-ami-sagemaker-inference-gpu-3-1) echo 550 ;;
    al2023-ami-sagemaker-inference-gpu-4-1) echo 580 ;;
    none)
      case "$INSTANCE_TYPE" in
        ml.g4dn.*|ml.g5.*|ml.p3.*|ml.p4d.*|ml.p4de.*) echo 470 ;;
        ml.g6.*|ml.g6e.*|ml.p5.*) echo 535 ;;
        *) echo 0 ;;
      esac ;;
    *) echo 0 ;;
  esac
}

# The smallest driver for the image's CUDA: CUDA 12 libraries run on 525+ through minor-version
# compatibility and TensorRT 10 asks for r535+; CUDA 13 needs R580+.
min_driver() { if [[ "$CUDA_MAJOR" == 13 ]]; then echo 580; else echo 535; fi; }

# The CUDA major of IMAGE_URI when its tag says (gpu-cu12-..., gpu-cu13-...), else empty.
image_uri_cuda() {
  local tag="${IMAGE_URI##*/}"
  case "${tag#*:}" in *cu13*) echo 13 ;; *cu12*) echo 12 ;; esac
}

# Dies when this image cannot start on this instance type's host (wrong driver, wrong variant).
check_gpu_host() {
  if [[ "$IMAGE_VARIANT" != gpu ]]; then
    [[ "$INFERENCE_AMI_VERSION" == none ]] \
      || die "INFERENCE_AMI_VERSION=$INFERENCE_AMI_VERSION is for GPU instance types, not $INSTANCE_TYPE"
    return 0
  fi
  case "$INSTANCE_TYPE" in
    ml.inf*|ml.trn*) die "$INSTANCE_TYPE has AWS Inferentia/Trainium chips, not NVIDIA GPUs: the GPU image cannot run there" ;;
  esac
  local uri_cuda driver need
  uri_cuda="$(image_uri_cuda)"
  if [[ -n "$IMAGE_URI" && -n "$uri_cuda" && "$uri_cuda" != "$CUDA_MAJOR" ]]; then
    die "IMAGE_URI $IMAGE_URI is a CUDA $uri_cuda image but CUDA_MAJOR=$CUDA_MAJOR: set CUDA_MAJOR=$uri_cuda"
  fi
  driver="$(ami_driver "$INFERENCE_AMI_VERSION")"
  need="$(min_driver)"
  if (( driver == 0 )); then
    die "unknown NVIDIA driver for InferenceAmiVersion '$INFERENCE_AMI_VERSION' on $INSTANCE_TYPE: use al2-ami-sagemaker-inference-gpu-2-1 (535), -3-1 (550) or al2023-ami-sagemaker-inference-gpu-4-1 (580)"
  fi
  if (( driver < need )); then
    die "the CUDA $CUDA_MAJOR image cannot start on $INSTANCE_TYPE with InferenceAmiVersion $INFERENCE_AMI_VERSION (driver $driver): it needs driver $need or newer (README_SAGEMAKER.md, section 7)"
  fi
}

gpu_host_summary() {
  if [[ "$IMAGE_VARIANT" == gpu ]]; then
    echo "CUDA $CUDA_MAJOR image, InferenceAmiVersion $INFERENCE_AMI_VERSION (driver $(ami_driver "$INFERENCE_AMI_VERSION"))"
  else
    echo "CPU image"
  fi
}

cmd_check() {
  local id summary=""
  for id in "${VARIANT_IDS[@]}"; do
    use_variant "$id"
    check_gpu_host
    [[ -d "$MODEL_DIR" ]] || die "MODEL_DIR $MODEL_DIR does not exist (export it with export/export_sam.py)"
    if ab_test; then summary+="${summary:+; }$VARIANT_NAME on $INSTANCE_TYPE: $(gpu_host_summary)"
    else summary="$INSTANCE_TYPE: $(gpu_host_summary)"; fi
  done
  command -v aws >/dev/null || die "the AWS CLI is not installed (pip install awscli)"
  aws --version >&2
  account_id >/dev/null || die "no usable AWS credentials (aws configure, or AWS_PROFILE / AWS_ACCESS_KEY_ID)"
  require_bucket
  aws s3api head-bucket --bucket "$S3_BUCKET" >/dev/null 2>&1 || die "bucket s3://$S3_BUCKET is missing or not accessible"
  local role; role="$(role_arn)"
  aws iam get-role --role-name "${role##*/}" >/dev/null 2>&1 || die "IAM role $role does not exist (set ROLE_ARN)"
  for id in "${VARIANT_IDS[@]}"; do
    use_variant "$id"
    if needs_image_build; then
      command -v docker >/dev/null || die "docker is needed to build the image (or set IMAGE_URI to an existing image)"
      docker info >/dev/null 2>&1 || die "no Docker engine is running (or set IMAGE_URI to an existing image)"
    fi
  done
  info "check passed: account $(account_id), region $AWS_REGION, bucket $S3_BUCKET, role $(role_arn); $summary"
}

cmd_package() {
  require_bucket
  local id
  for id in "${VARIANT_IDS[@]}"; do
    use_variant "$id"
    if [[ "$DRY_RUN" == 1 ]]; then
      echo "DRY-RUN: $PYTHON package_model.py --model-dir $MODEL_DIR --output-dir $ARTIFACTS_DIR --s3-bucket $S3_BUCKET --s3-key $S3_KEY" >&3
      continue
    fi
    "$PYTHON" "$SCRIPT_DIR/package_model.py" --model-dir "$MODEL_DIR" --output-dir "$ARTIFACTS_DIR" \
      --s3-bucket "$S3_BUCKET" --s3-key "$S3_KEY" --region "$AWS_REGION"
  done
}

ecr_registry() { local account; account="$(account_id)"; echo "$account.dkr.ecr.$AWS_REGION.amazonaws.com"; }
# gpu-cu12-<commit>, gpu-cu13-<commit> or cpu-<commit>.
image_tag() {
  echo "$(image_flavour)-$(git -C "$SCRIPT_DIR" rev-parse --short HEAD 2>/dev/null || date +%s)"
}

declare -A BUILT_IMAGES=()
cmd_image() {
  local id
  for id in "${VARIANT_IDS[@]}"; do
    use_variant "$id"
    if ! needs_image_build; then
      info "IMAGE_URI=$IMAGE_URI given${id:+ for variant $VARIANT_NAME}: not building an image"
    elif [[ -n "${BUILT_IMAGES[$(image_flavour)]:-}" ]]; then
      info "image ${BUILT_IMAGES[$(image_flavour)]} (built for the other variant) for variant $VARIANT_NAME"
    else
      build_image
    fi
  done
}

build_image() {
  local registry repo_uri tag
  registry="$(ecr_registry)"
  local build_args=(--build-arg "VARIANT=$IMAGE_VARIANT")
  if [[ "$IMAGE_VARIANT" == gpu ]]; then build_args+=(--build-arg "CUDA_MAJOR=$CUDA_MAJOR"); fi
  tag="$(image_tag)"
  repo_uri="$registry/$ECR_REPOSITORY"
  aws ecr describe-repositories --repository-names "$ECR_REPOSITORY" >/dev/null 2>&1 \
    || aws_change ecr create-repository --repository-name "$ECR_REPOSITORY" --image-scanning-configuration scanOnPush=true >/dev/null
  if [[ "$DRY_RUN" == 1 ]]; then
    echo "DRY-RUN: docker build -f Dockerfile.sagemaker ${build_args[*]} -t $repo_uri:$tag . && docker push $repo_uri:$tag" >&3
  else
    aws ecr get-login-password | docker login --username AWS --password-stdin "$registry"
    docker build -f "$SCRIPT_DIR/Dockerfile.sagemaker" "${build_args[@]}" -t "$repo_uri:$tag" "$SCRIPT_DIR"
    docker push "$repo_uri:$tag"
  fi
  IMAGE_URI="$repo_uri:$tag"
  BUILT_IMAGES[$(image_flavour)]="$IMAGE_URI"
  state_set "$(image_key)" "$IMAGE_URI"
  info "image $IMAGE_URI"
}

# Host memory of an instance type in GiB (0 when unknown): vCPUs from the size, GiB per vCPU
# from the family (c: 2, m: 4, r: 8; g4dn.xlarge has 16 GiB for 4 vCPUs).
instance_memory_gib() {
  local family="${1#ml.}" size vcpus per_vcpu
  size="${family#*.}"; family="${family%%.*}"
  case "$size" in
    large) vcpus=2 ;; xlarge) vcpus=4 ;;
    *xlarge) vcpus=$(( ${size%xlarge} * 4 )) ;;
    *) echo 0; return ;;
  esac
  case "$family" in
    c*) per_vcpu=2 ;; m*|g4dn|g5|g6) per_vcpu=4 ;; r*) per_vcpu=8 ;;
    *) echo 0; return ;;
  esac
  echo $(( vcpus * per_vcpu ))
}

# Embedding cache budget: a quarter of host memory (the model, the upload being decoded and
# the OS need the rest), at least 512 MiB, at most 8 GiB; 1 GiB for unknown CPU types and
# 2 GiB for unknown GPU types. An entry is a 4 MiB embedding plus the upload.
cache_budget() {
  local memory; memory="$(instance_memory_gib "$INSTANCE_TYPE")"
  if (( memory == 0 )); then
    if [[ "$IMAGE_VARIANT" == gpu ]]; then echo "2GiB"; else echo "1GiB"; fi
    return
  fi
  local mib=$(( memory * 1024 / 4 ))
  (( mib < 512 )) && mib=512
  (( mib > 8192 )) && mib=8192
  echo "${mib}MiB"
}

# The container's environment: cache budget, body limit, JSON logs, and the endpoint and variant its
# EMF metrics are published for.
container_environment() {
  local cache max_body
  cache="$(cache_budget)"
  if [[ "$DEPLOY_MODE" == async ]]; then max_body="256MiB"; else max_body="6MiB"; fi
  printf '{"SAM_CACHE_BYTES":"%s","SAM_MAX_BODY_BYTES":"%s","SAM_LOG_FORMAT":"json","SAM_ENDPOINT_NAME":"%s","SAM_VARIANT_NAME":"%s"}' \
    "${SAM_CACHE_BYTES:-$cache}" "${SAM_MAX_BODY_BYTES:-$max_body}" "$ENDPOINT_NAME" "$VARIANT_NAME"
}

# The current variant's image: IMAGE_URI, the one 'image' pushed, or (dry run) the one it would push.
resolve_image() {
  local image="${IMAGE_URI:-$(state_get "$(image_key)")}"
  if [[ -z "$image" && "$DRY_RUN" == 1 ]]; then
    local registry tag
    registry="$(ecr_registry)"; tag="$(image_tag)"
    image="$registry/$ECR_REPOSITORY:$tag"
    info "no IMAGE_URI and no 'image' step in this run: showing the image 'image' would build and push: $image"
  fi
  [[ -n "$image" ]] || die "no image: run 'image' first or set IMAGE_URI"
  echo "$image"
}

# create_model NAME ENVIRONMENT_JSON: a SageMaker model of the current variant's image and archive.
create_model() {
  local image role
  image="$(resolve_image)"
  role="$(role_arn)"
  aws_change sagemaker create-model --model-name "$1" --execution-role-arn "$role" \
    --primary-container "{\"Image\":\"$image\",\"ModelDataUrl\":\"s3://$S3_BUCKET/$S3_KEY\",\"Environment\":$2}" \
    --tags "Key=$TAG_KEY,Value=$ENDPOINT_NAME" >/dev/null
}

cmd_model() {
  require_bucket
  local id name
  for id in "${VARIANT_IDS[@]}"; do
    use_variant "$id"
    name="$MODEL_NAME-$(date -u +%Y%m%d%H%M%S)-$RANDOM"
    create_model "$name" "$(container_environment)"
    state_set "$(model_key)" "$name"
    info "model $name${id:+ (variant $VARIANT_NAME)}"
  done
}

# The current variant's ProductionVariant JSON object for an endpoint config (the weight only in an A/B test).
variant_json() {
  local model; model="$(state_get "$(model_key)")"
  [[ -n "$model" || "$DRY_RUN" == 1 ]] || die "no model${1:+ for variant $VARIANT_NAME}: run 'model' first"
  model="${model:-$MODEL_NAME-DRYRUN}"
  check_gpu_host
  local ami="" weight=""
  [[ "$INFERENCE_AMI_VERSION" == none ]] || ami=",\"InferenceAmiVersion\":\"$INFERENCE_AMI_VERSION\""
  [[ -z "$1" ]] || weight=",\"InitialVariantWeight\":$VARIANT_WEIGHT"
  echo "{\"VariantName\":\"$VARIANT_NAME\",\"ModelName\":\"$model\",\"InstanceType\":\"$INSTANCE_TYPE\",\"InitialInstanceCount\":$INITIAL_INSTANCE_COUNT,\"ContainerStartupHealthCheckTimeoutInSeconds\":$STARTUP_HEALTH_TIMEOUT_S$ami$weight}"
}

cmd_config() {
  local name; name="$MODEL_NAME-config-$(date -u +%s)-$RANDOM"
  local id variants="" summary=""
  for id in "${VARIANT_IDS[@]}"; do
    use_variant "$id"
    variants+="${variants:+,}$(variant_json "$id")" || exit 1
    if ab_test; then summary+="${summary:+; }$VARIANT_NAME: $INSTANCE_TYPE, $(gpu_host_summary), weight $VARIANT_WEIGHT"
    else summary="$INSTANCE_TYPE, $(gpu_host_summary)"; fi
  done
  local variant="[$variants]"
  local args=(sagemaker create-endpoint-config --endpoint-config-name "$name" --production-variants "$variant"
              --tags "Key=$TAG_KEY,Value=$ENDPOINT_NAME")
  if [[ "$DEPLOY_MODE" == async ]]; then
    require_bucket
    local notify=""
    if [[ -n "$SNS_SUCCESS_TOPIC$SNS_ERROR_TOPIC" ]]; then
      notify=",\"NotificationConfig\":{\"SuccessTopic\":\"$SNS_SUCCESS_TOPIC\",\"ErrorTopic\":\"$SNS_ERROR_TOPIC\"}"
    fi
    args+=(--async-inference-config "{\"OutputConfig\":{\"S3OutputPath\":\"s3://$S3_BUCKET/$ASYNC_OUTPUT_PREFIX/output\",\"S3FailurePath\":\"s3://$S3_BUCKET/$ASYNC_OUTPUT_PREFIX/failure\"$notify},\"ClientConfig\":{\"MaxConcurrentInvocationsPerInstance\":$ASYNC_MAX_CONCURRENT}}")
  fi
  aws_change "${args[@]}" >/dev/null
  state_set CONFIG "$name"
  info "endpoint config $name ($DEPLOY_MODE, $summary)"
}

# wait_for_endpoint [CONFIG]: wait for InService; return 1 (with the FailureReason) when the
# endpoint failed, vanished, or rolled an update back. A failed UpdateEndpoint (say, a container that
# never passes /ping) leaves the endpoint InService on its previous config with a FailureReason
# (AWS: "the status is InService but update operation fails"), so after an update CONFIG is the
# config asked for, and InService on another one is a rollback. RollingBack (capacity and weight
# changes) is one too, and UpdateRollbackFailed leaves a mix of old and new instances.
wait_for_endpoint() {
  local expected_config="${1:-}" deadline=$((SECONDS + WAIT_TIMEOUT_S)) status rolled_back=0 reason serving
  while true; do
    status="$(endpoint_status)" || exit 1  # explicit: callers test this function, which suspends set -e
    if [[ "$status" == InService && -n "$expected_config" ]]; then
      serving="$(aws sagemaker describe-endpoint --endpoint-name "$ENDPOINT_NAME" --query EndpointConfigName --output text)" \
        || die "cannot describe endpoint $ENDPOINT_NAME"
      [[ "$serving" == "$expected_config" ]] || rolled_back=1
    fi
    case "$status" in
      InService)
        [[ "$rolled_back" == 0 ]] && { info "endpoint $ENDPOINT_NAME is InService"; return 0; }
        status="rolled back to its previous config${serving:+ ($serving)}" ;&
      Failed|Missing|UpdateRollbackFailed)
        reason="$(aws sagemaker describe-endpoint --endpoint-name "$ENDPOINT_NAME" --query FailureReason --output text 2>/dev/null || true)"
        echo "error: endpoint $ENDPOINT_NAME is $status: ${reason:-no FailureReason given} (logs: /aws/sagemaker/Endpoints/$ENDPOINT_NAME)" >&2
        return 1 ;;
      RollingBack) rolled_back=1 ;;
    esac
    [[ $SECONDS -lt $deadline ]] || die "endpoint $ENDPOINT_NAME still $status after ${WAIT_TIMEOUT_S}s"
    info "endpoint $ENDPOINT_NAME is $status; waiting"
    sleep "$POLL_S"
  done
}

cmd_endpoint() {
  local config status; config="$(state_get CONFIG)"
  [[ -n "$config" || "$DRY_RUN" == 1 ]] || die "no endpoint config: run 'config' first"
  config="${config:-$MODEL_NAME-config-DRYRUN}"
  status="$(endpoint_status)"
  if [[ "$status" == Missing ]]; then
    aws_change sagemaker create-endpoint --endpoint-name "$ENDPOINT_NAME" --endpoint-config-name "$config" \
      --tags "Key=$TAG_KEY,Value=$ENDPOINT_NAME" >/dev/null
    [[ "$DRY_RUN" == 1 ]] || wait_for_endpoint
  else
    update_endpoint "$config" "$status"
  fi
}

# Update an existing endpoint in place (AWS's order for autoscaled variants): delete the scaling
# policies and deregister the scalable targets (an update that changes an autoscaled variant's
# instance type fails otherwise), update-endpoint keeping each variant's current instance count
# (--retain-all-variant-properties: a scaled-out variant stays scaled out; in an A/B test the new
# config's weights apply), wait for InService, then register the targets and their policies
# again, also when the update failed and rolled back.
update_endpoint() {
  local config="$1" status="$2" scaled=0
  case "$status" in
    InService|Failed) ;;
    *) die "endpoint $ENDPOINT_NAME is $status: wait until it is InService, then deploy again" ;;
  esac
  info "endpoint $ENDPOINT_NAME exists ($status): updating it in place (blue/green) to $config"
  local resources; resources="$(scaled_resources)" || exit 1
  if [[ -n "$resources" ]]; then
    scaled=1
    remove_scaling "$resources"
  fi
  local keep=(--retain-all-variant-properties)
  if ab_test; then keep+=(--exclude-retained-variant-properties VariantPropertyType=DesiredWeight); fi
  aws_change sagemaker update-endpoint --endpoint-name "$ENDPOINT_NAME" --endpoint-config-name "$config" "${keep[@]}" >/dev/null
  if [[ "$DRY_RUN" == 1 ]]; then
    echo "DRY-RUN: wait until $ENDPOINT_NAME is InService" >&3
  elif ! wait_for_endpoint "$config"; then
    if [[ "$scaled" == 1 ]]; then info "registering autoscaling again for the variants that keep serving"; autoscale_serving; fi
    die "the update of $ENDPOINT_NAME to $config did not reach InService (logs: /aws/sagemaker/Endpoints/$ENDPOINT_NAME)"
  fi
  if [[ "$scaled" == 1 ]]; then
    cmd_autoscale
    AUTOSCALE_DONE=1
  fi
}

resource_id() { echo "endpoint/$ENDPOINT_NAME/variant/$VARIANT_NAME"; }

# The endpoint's variants that are registered scalable targets, as resource ids (a failing describe stops the script).
scaled_resources() {
  local targets
  targets="$(aws application-autoscaling describe-scalable-targets --service-namespace sagemaker \
    --query "ScalableTargets[?starts_with(ResourceId, 'endpoint/$ENDPOINT_NAME/variant/')].ResourceId" --output text)" \
    || die "cannot describe the scalable targets of $ENDPOINT_NAME"
  [[ "$targets" == None ]] || echo "$targets"
}

# remove_scaling RESOURCE_IDS [keep-alarm]: delete their scaling policies (and the backlog alarm),
# then deregister them as scalable targets.
remove_scaling() {
  local resource policy policies
  for resource in $1; do
    policies="$(aws application-autoscaling describe-scaling-policies --service-namespace sagemaker \
      --resource-id "$resource" --query 'ScalingPolicies[].PolicyName' --output text)" \
      || die "cannot list the scaling policies of $resource"
    for policy in $policies; do
      [[ "$policy" == None ]] && continue
      aws_change application-autoscaling delete-scaling-policy --service-namespace sagemaker --policy-name "$policy" \
        --resource-id "$resource" --scalable-dimension sagemaker:variant:DesiredInstanceCount
    done
  done
  if [[ "${2:-}" != keep-alarm ]]; then
    aws_change cloudwatch delete-alarms --alarm-names "$ENDPOINT_NAME-has-backlog-without-capacity" 2>/dev/null || true
  fi
  for resource in $1; do
    aws_change application-autoscaling deregister-scalable-target --service-namespace sagemaker \
      --resource-id "$resource" --scalable-dimension sagemaker:variant:DesiredInstanceCount
  done
}

# After a failed update: autoscaling for the configured variants the endpoint still has.
autoscale_serving() {
  local serving id
  serving=" $(aws sagemaker describe-endpoint --endpoint-name "$ENDPOINT_NAME" --query 'ProductionVariants[].VariantName' --output text 2>/dev/null | tr '\t' ' ') "
  for id in "${VARIANT_IDS[@]}"; do
    use_variant "$id"
    if [[ "$serving" == *" $VARIANT_NAME "* ]]; then autoscale_variant; fi
  done
}

# register_target MIN MAX; target_tracking POLICY_JSON: the variant's scaling target and policy.
register_target() {
  aws_change application-autoscaling register-scalable-target --service-namespace sagemaker \
    --resource-id "$(resource_id)" --scalable-dimension sagemaker:variant:DesiredInstanceCount \
    --min-capacity "$1" --max-capacity "$2" >/dev/null
}

target_tracking() {
  aws_change application-autoscaling put-scaling-policy --policy-name "$ENDPOINT_NAME-scaling" --service-namespace sagemaker \
    --resource-id "$(resource_id)" --scalable-dimension sagemaker:variant:DesiredInstanceCount \
    --policy-type TargetTrackingScaling --target-tracking-scaling-policy-configuration "$1" >/dev/null
}

cmd_autoscale() {
  local id
  for id in "${VARIANT_IDS[@]}"; do
    use_variant "$id"
    if [[ "$AUTOSCALE_DONE" == 1 ]]; then
      info "autoscaling for $(resource_id) was registered again after the update"
    else
      autoscale_variant
    fi
  done
}

autoscale_variant() {
  if [[ "$DEPLOY_MODE" == async ]]; then
    register_target "$ASYNC_MIN_INSTANCES" "$MAX_INSTANCES"
    target_tracking "{\"TargetValue\":$ASYNC_TARGET_BACKLOG_PER_INSTANCE,\"CustomizedMetricSpecification\":{\"MetricName\":\"ApproximateBacklogSizePerInstance\",\"Namespace\":\"AWS/SageMaker\",\"Dimensions\":[{\"Name\":\"EndpointName\",\"Value\":\"$ENDPOINT_NAME\"}],\"Statistic\":\"Average\"},\"ScaleInCooldown\":600,\"ScaleOutCooldown\":120}"
    # From zero instances the backlog per instance is undefined: a step policy on
    # HasBacklogWithoutCapacity starts the first instance.
    local step_arn
    step_arn="$(aws_change application-autoscaling put-scaling-policy --policy-name "$ENDPOINT_NAME-scaling-from-zero" --service-namespace sagemaker \
      --resource-id "$(resource_id)" --scalable-dimension sagemaker:variant:DesiredInstanceCount --policy-type StepScaling \
      --step-scaling-policy-configuration '{"AdjustmentType":"ChangeInCapacity","MetricAggregationType":"Average","Cooldown":120,"StepAdjustments":[{"MetricIntervalLowerBound":0,"ScalingAdjustment":1}]}' \
      --query PolicyARN --output text)"
    aws_change cloudwatch put-metric-alarm --alarm-name "$ENDPOINT_NAME-has-backlog-without-capacity" \
      --namespace AWS/SageMaker --metric-name HasBacklogWithoutCapacity --dimensions "Name=EndpointName,Value=$ENDPOINT_NAME" \
      --statistic Average --period 60 --evaluation-periods 2 --threshold 1 --comparison-operator GreaterThanOrEqualToThreshold \
      --treat-missing-data missing --alarm-actions "${step_arn:-DRY-RUN-POLICY-ARN}"
  else
    register_target "$MIN_INSTANCES" "$MAX_INSTANCES"
    target_tracking "{\"TargetValue\":$TARGET_INVOCATIONS_PER_INSTANCE,\"PredefinedMetricSpecification\":{\"PredefinedMetricType\":\"SageMakerVariantInvocationsPerInstance\"},\"ScaleInCooldown\":300,\"ScaleOutCooldown\":60}"
  fi
  info "autoscaling for $(resource_id) ($DEPLOY_MODE)"
}

cmd_test() {
  mkdir -p "$STATE_DIR"
  local image points
  image="$(cd "$STATE_DIR" && pwd)/test-wall.jpg"
  # A 12 MP phone photo (3024x4032 upright, EXIF-rotated), as the app sends: the answer must fit 6 MiB.
  points="$(PYTHONPATH="$SCRIPT_DIR${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" -m synthetic.wall_photo --out "$image" --clicks 3 \
    | "$PYTHON" -c 'import json,sys; print(";".join(f"{x},{y}" for x, y in json.load(sys.stdin)["clicks"]))')"
  local args=(--endpoint-name "$ENDPOINT_NAME" --region "$AWS_REGION" --test-image "$image" --points "$points" --verify)
  if [[ -n "${AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME:-}" ]]; then args+=(--endpoint-url "$AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME"); fi
  if [[ "$DEPLOY_MODE" == async ]]; then require_bucket; args+=(--async --bucket "$S3_BUCKET"); fi
  if ! ab_test; then
    if [[ "$DRY_RUN" == 1 ]]; then echo "DRY-RUN: $PYTHON sagemaker_client.py ${args[*]} --out-dir $STATE_DIR/test-output" >&3; return 0; fi
    "$PYTHON" "$SCRIPT_DIR/sagemaker_client.py" "${args[@]}" --out-dir "$STATE_DIR/test-output"
    info "test passed: the endpoint answered with a consistent cut-out and mask"
    return 0
  fi
  # A/B: each variant on its own (TargetVariant), and the answer must say that variant gave it.
  local id report
  for id in "${VARIANT_IDS[@]}"; do
    use_variant "$id"
    local pinned=("${args[@]}" --target-variant "$VARIANT_NAME" --out-dir "$STATE_DIR/test-output/$VARIANT_NAME")
    if [[ "$DRY_RUN" == 1 ]]; then echo "DRY-RUN: $PYTHON sagemaker_client.py ${pinned[*]}" >&3; continue; fi
    report="$("$PYTHON" "$SCRIPT_DIR/sagemaker_client.py" "${pinned[@]}")"
    echo "$report"
    echo "$report" | "$PYTHON" -c 'import json,sys; sys.exit(json.load(sys.stdin).get("variant") != sys.argv[1])' "$VARIANT_NAME" \
      || die "the request pinned to variant $VARIANT_NAME was not answered by it (InvokedProductionVariant)"
    info "test passed for variant $VARIANT_NAME: it answered with a consistent cut-out and mask"
  done
}

cmd_status() {
  local status; status="$(endpoint_status)"
  if [[ "$status" == Missing ]]; then echo "endpoint $ENDPOINT_NAME does not exist"; return 0; fi
  aws sagemaker describe-endpoint --endpoint-name "$ENDPOINT_NAME" \
    --query '{Status:EndpointStatus,Config:EndpointConfigName,Variants:ProductionVariants[].{Name:VariantName,Instances:CurrentInstanceCount,Weight:CurrentWeight},FailureReason:FailureReason}' \
    --output json
  aws application-autoscaling describe-scaling-policies --service-namespace sagemaker \
    --query "ScalingPolicies[?starts_with(ResourceId, 'endpoint/$ENDPOINT_NAME/variant/')].{Variant:ResourceId,Policy:PolicyName,Type:PolicyType}" \
    --output json
  echo "logs:    /aws/sagemaker/Endpoints/$ENDPOINT_NAME"
  echo "metrics: AWS/SageMaker Invocations, ModelLatency, OverheadLatency, Invocation4XXErrors, Invocation5XXErrors (EndpointName=$ENDPOINT_NAME, per VariantName too)"
  echo "         SamHolds TotalLatency, EncoderLatency, ClientErrors, ServerErrors, ... (EndpointName; EndpointName, VariantName)"
}

tagged_for_endpoint() {
  local tags
  tags="$(aws sagemaker list-tags --resource-arn "$1" --query "Tags[?Key=='$TAG_KEY'].Value" --output text 2>/dev/null || true)"
  [[ "$tags" == "$ENDPOINT_NAME" ]]
}

cmd_delete() {
  local resources; resources="$(scaled_resources)" || exit 1
  remove_scaling "$resources"
  local status; status="$(endpoint_status)"
  if [[ "$status" != Missing ]]; then
    aws_change sagemaker delete-endpoint --endpoint-name "$ENDPOINT_NAME"
  fi
  local arn name
  for arn in $(aws sagemaker list-endpoint-configs --name-contains "$MODEL_NAME-config" --query 'EndpointConfigs[].EndpointConfigArn' --output text); do
    [[ "$arn" == None ]] && continue
    if tagged_for_endpoint "$arn"; then
      name="${arn##*/}"; aws_change sagemaker delete-endpoint-config --endpoint-config-name "$name"
    fi
  done
  for arn in $(aws sagemaker list-models --name-contains "$MODEL_NAME" --query 'Models[].ModelArn' --output text); do
    [[ "$arn" == None ]] && continue
    if tagged_for_endpoint "$arn"; then
      name="${arn##*/}"; aws_change sagemaker delete-model --model-name "$name"
    fi
  done
  [[ "$DRY_RUN" == 1 ]] || rm -f "$STATE_FILE"
  info "deleted $ENDPOINT_NAME and what this tool created for it (model.tar.gz stays in s3://${S3_BUCKET:-?}/$S3_KEY)"
}

# shift and promote (deploy/ab_test.sh), batch (deploy/batch.sh); `shellcheck -x` follows them.
# shellcheck source=deploy/ab_test.sh disable=SC1091
source "$SCRIPT_DIR/deploy/ab_test.sh"
# shellcheck source=deploy/batch.sh disable=SC1091
source "$SCRIPT_DIR/deploy/batch.sh"

run() {
  case "$1" in
    all) cmd_check; cmd_package; cmd_image; cmd_model; cmd_config; cmd_endpoint; cmd_autoscale; cmd_test ;;
    shift) cmd_shift "${SHIFT_WEIGHTS[@]}" ;;
    promote) cmd_promote "$PROMOTE_VARIANT" ;;
    batch) cmd_batch "$BATCH_INPUT" "$BATCH_OUTPUT" ;;
    *) "cmd_$1" ;;
  esac
}

# A dry run reads the current state from AWS (describe calls) to show create versus update:
# without credentials it cannot, so it stops here instead of printing a guess.
if [[ "$DRY_RUN" == 1 ]]; then
  aws sts get-caller-identity --query Account --output text >/dev/null 2>&1 \
    || die "--dry-run reads the current state from AWS and needs credentials: $NO_CREDENTIALS"
fi

for command in "${COMMANDS[@]}"; do
  run "$command"
done
