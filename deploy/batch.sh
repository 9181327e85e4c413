# shellcheck shell=bash
# Batch Transform, sourced by deploy_to_sagemaker.sh: `batch INPUT_S3_PREFIX OUTPUT_S3_PREFIX`.
# Uses the main script's settings and helpers (aws_change, create_model, use_variant, cache_budget).
#
# One request file per photo under the input prefix: .zip (the asynchronous endpoint's contract:
# image.bin + points.json) or .json (the real-time JSON body); all of one kind per job (SageMaker
# sends one ContentType per job; BATCH_CONTENT_TYPE overrides). One file is one record
# (SplitType None, BatchStrategy SingleRecord). Each answer is written to
# OUTPUT_S3_PREFIX<path below the input prefix>.out: the response body (a zip with
# result_image.bin, mask_image.bin and metadata.json, or the JSON answer).

TRANSFORM_LOG_GROUP=/aws/sagemaker/TransformJobs
# SageMaker's batch GPU AMIs (botocore's TransformAmiVersion): drivers 470 and 535; none has R580.
TRANSFORM_GPU_AMI=al2-ami-sagemaker-batch-gpu-535

# s3://bucket/prefix -> "bucket prefix/" (a trailing slash, so s3://b/in never matches s3://b/input-old/).
split_prefix() {
  local rest="${1#s3://}"
  [[ "$1" == s3://* && "$rest" == */* && -n "${rest%%/*}" ]] || die "'$1' is not an s3://bucket/prefix/ location"
  local prefix="${rest#*/}"
  [[ -z "$prefix" || "$prefix" == */ ]] || prefix+="/"
  echo "${rest%%/*} $prefix"
}

# The request files under the input prefix as "key<TAB>size" lines (no folder markers).
list_requests() {
  local listed
  listed="$(aws s3api list-objects-v2 --bucket "$1" --prefix "$2" --query 'Contents[].[Key,Size]' --output text)" \
    || die "cannot list s3://$1/$2"
  [[ "$listed" == None ]] || grep -v $'/\t' <<<"$listed" || true
}

# The job's ContentType from the files' extensions (or BATCH_CONTENT_TYPE).
batch_content_type() {
  if [[ -n "$BATCH_CONTENT_TYPE" ]]; then echo "$BATCH_CONTENT_TYPE"; return 0; fi
  local kinds
  kinds="$(cut -f1 <<<"$1" | awk '{ n = split($0, p, "."); e = (n > 1 ? tolower(p[n]) : "(none)"); print e }' | sort -u)"
  case "$kinds" in
    zip) echo application/zip ;;
    json) echo application/json ;;
    *) die "the request files must all be .zip or all .json (one ContentType per job), found: $(paste -sd' ' - <<<"$kinds"); \
split them into two prefixes, or set BATCH_CONTENT_TYPE" ;;
  esac
}

# cmd_batch INPUT_S3_PREFIX OUTPUT_S3_PREFIX
cmd_batch() {
  require_bucket
  local in_bucket in_prefix out_bucket out_prefix
  read -r in_bucket in_prefix <<<"$(split_prefix "$1")" || exit 1
  read -r out_bucket out_prefix <<<"$(split_prefix "$2")" || exit 1
  [[ "$in_bucket/$in_prefix" != "$out_bucket/$out_prefix"* && "$out_bucket/$out_prefix" != "$in_bucket/$in_prefix"* ]] \
    || die "the output prefix must not overlap the input prefix: the outputs would become inputs of the next job"
  local payload="$BATCH_MAX_PAYLOAD_MB" concurrent="$BATCH_MAX_CONCURRENT"
  if ! [[ "$payload" =~ ^[0-9]+$ ]] || (( payload < 1 || payload > 100 )); then
    die "BATCH_MAX_PAYLOAD_MB must be 1 to 100 (SageMaker's MaxPayloadInMB), not '$payload'"
  fi
  if ! [[ "$concurrent" =~ ^[0-9]+$ ]] || (( concurrent < 1 )); then
    die "BATCH_MAX_CONCURRENT must be 1 or more, not '$concurrent'"
  fi
  (( payload * concurrent <= 100 )) || die "BATCH_MAX_CONCURRENT x BATCH_MAX_PAYLOAD_MB is $((payload * concurrent)) MB; \
SageMaker allows 100 (MaxConcurrentTransforms x MaxPayloadInMB): lower one of them"

  local requests count content_type accept too_large
  requests="$(list_requests "$in_bucket" "$in_prefix")" || exit 1
  [[ -n "$requests" ]] || die "no request files under s3://$in_bucket/$in_prefix (one .zip or .json per photo)"
  count="$(wc -l <<<"$requests")"
  content_type="$(batch_content_type "$requests")" || exit 1
  accept="${BATCH_ACCEPT:-$content_type}"
  too_large="$(awk -F'\t' -v max=$((payload << 20)) '$2 > max { print $1 " (" $2 " bytes)" }' <<<"$requests" | head -5)"
  [[ -z "$too_large" ]] || die "request files over BATCH_MAX_PAYLOAD_MB=$payload MiB (SageMaker would fail them): \
$(paste -sd',' - <<<"$too_large"); raise BATCH_MAX_PAYLOAD_MB (at most $((100 / concurrent)) with BATCH_MAX_CONCURRENT=$concurrent)"
  if [[ "$DRY_RUN" != 1 ]]; then
    aws s3api head-object --bucket "$S3_BUCKET" --key "$S3_KEY" >/dev/null 2>&1 \
      || die "no model archive at s3://$S3_BUCKET/$S3_KEY: run 'package' first (e.g. ./deploy_to_sagemaker.sh package batch ...)"
  fi

  # The batch instance's image: BATCH_INSTANCE_TYPE's (default INSTANCE_TYPE) GPU or CPU image.
  INSTANCE_TYPE="${BATCH_INSTANCE_TYPE:-$INSTANCE_TYPE}"; IMAGE_VARIANT="$BASE_IMAGE_VARIANT"; derive_image_settings
  local ami=""
  if [[ "$IMAGE_VARIANT" == gpu ]]; then
    case "$INSTANCE_TYPE" in ml.inf*|ml.trn*) die "$INSTANCE_TYPE has no NVIDIA GPU: the GPU image cannot run there" ;; esac
    [[ "$CUDA_MAJOR" == 12 ]] || die "the CUDA $CUDA_MAJOR image cannot run a batch transform: SageMaker's batch GPU AMIs \
have drivers 470 and 535 (CUDA 12 runs on $TRANSFORM_GPU_AMI); use CUDA_MAJOR=12"
    ami=",TransformAmiVersion=$TRANSFORM_GPU_AMI"
  fi

  local stamp model job environment
  stamp="$(date -u +%Y%m%d%H%M%S)-$RANDOM"
  model="${MODEL_NAME:0:36}-batch-$stamp"  # at most 63 characters too
  job="${MODEL_NAME:0:36}-batch-$stamp"  # at most 63 characters
  # The container's body limit is the job's MaxPayloadInMB; its request deadline sits under the invocation timeout.
  environment="$(printf '{"SAM_CACHE_BYTES":"%s","SAM_MAX_BODY_BYTES":"%sMiB","SAM_REQUEST_TIMEOUT_S":"%s","SAM_LOG_FORMAT":"json","SAM_METRICS":"false"}' \
    "${SAM_CACHE_BYTES:-$(cache_budget)}" "$payload" "$((BATCH_INVOCATION_TIMEOUT_S > 10 ? BATCH_INVOCATION_TIMEOUT_S - 5 : BATCH_INVOCATION_TIMEOUT_S))")"
  create_model "$model" "$environment"
  aws_change sagemaker create-transform-job --transform-job-name "$job" --model-name "$model" \
    --max-concurrent-transforms "$concurrent" --max-payload-in-mb "$payload" --batch-strategy SingleRecord \
    --model-client-config "InvocationsTimeoutInSeconds=$BATCH_INVOCATION_TIMEOUT_S,InvocationsMaxRetries=$BATCH_MAX_RETRIES" \
    --transform-input "{\"DataSource\":{\"S3DataSource\":{\"S3DataType\":\"S3Prefix\",\"S3Uri\":\"s3://$in_bucket/$in_prefix\"}},\"ContentType\":\"$content_type\",\"SplitType\":\"None\",\"CompressionType\":\"None\"}" \
    --transform-output "S3OutputPath=s3://$out_bucket/$out_prefix,Accept=$accept,AssembleWith=None" \
    --transform-resources "InstanceType=$INSTANCE_TYPE,InstanceCount=$BATCH_INSTANCE_COUNT$ami" \
    --tags "Key=$TAG_KEY,Value=$ENDPOINT_NAME" >/dev/null
  info "transform job $job: $count request files ($content_type) from s3://$in_bucket/$in_prefix on $BATCH_INSTANCE_COUNT x \
$INSTANCE_TYPE ($(gpu_host_summary | sed 's/, InferenceAmiVersion.*//')${ami:+, ${ami#,}}), MaxConcurrentTransforms $concurrent, MaxPayloadInMB $payload"
  if [[ "$DRY_RUN" == 1 ]]; then
    echo "DRY-RUN: wait for transform job $job, then compare s3://$out_bucket/$out_prefix with the inputs" >&3
    return 0
  fi
  wait_for_transform_job "$job"
  report_transform_job "$job" "$requests" "$in_prefix" "$out_bucket" "$out_prefix"
}

wait_for_transform_job() {
  local deadline=$((SECONDS + WAIT_TIMEOUT_S)) status
  while true; do
    status="$(aws sagemaker describe-transform-job --transform-job-name "$1" --query TransformJobStatus --output text)" \
      || die "cannot describe transform job $1"
    case "$status" in Completed|Failed|Stopped) return 0 ;; esac
    [[ $SECONDS -lt $deadline ]] || die "transform job $1 still $status after ${WAIT_TIMEOUT_S}s (it keeps running; \
watch it with: aws sagemaker describe-transform-job --transform-job-name $1)"
    info "transform job $1 is $status; waiting"
    sleep "$POLL_S"
  done
}

# report_transform_job JOB REQUESTS IN_PREFIX OUT_BUCKET OUT_PREFIX: which inputs got their .out; on a
# failure, SageMaker's reason and the failed records' lines from the job's data log.
report_transform_job() {
  local job="$1" in_prefix="$3" out_bucket="$4" out_prefix="$5" status reason outputs missing total done_count
  status="$(aws sagemaker describe-transform-job --transform-job-name "$job" --query TransformJobStatus --output text)"
  outputs="$(list_requests "$out_bucket" "$out_prefix" | cut -f1)" || exit 1
  missing="$(cut -f1 <<<"$2" | while IFS= read -r key; do
    grep -qxF "$out_prefix${key#"$in_prefix"}.out" <<<"$outputs" || echo "$key"; done)"
  total="$(wc -l <<<"$2")"
  done_count=$((total - $(grep -c . <<<"$missing" || true)))
  if [[ "$status" == Completed && -z "$missing" ]]; then
    info "transform job $job Completed: all $total request files answered, in s3://$out_bucket/$out_prefix (<file>.out)"
    return 0
  fi
  reason="$(aws sagemaker describe-transform-job --transform-job-name "$job" --query FailureReason --output text)"
  echo "error: transform job $job is $status: ${reason:-no FailureReason given}" >&2
  local listed more
  listed="$(head -20 <<<"$missing" | paste -sd' ' -)"
  more=$(( $(grep -c . <<<"$missing" || true) - 20 ))
  (( more > 0 )) && listed+=" and $more more"
  echo "error: $done_count of $total request files answered (in s3://$out_bucket/$out_prefix); no answer for: $listed" >&2
  local failed="" streams
  streams="$(aws logs describe-log-streams --log-group-name "$TRANSFORM_LOG_GROUP" --log-stream-name-prefix "$job/" \
    --query 'logStreams[].logStreamName' --output text 2>/dev/null || true)"
  if [[ -n "$streams" && "$streams" != None ]]; then
    # shellcheck disable=SC2086 # the stream names (no blanks in them) are separate arguments
    failed="$(aws logs filter-log-events --log-group-name "$TRANSFORM_LOG_GROUP" --log-stream-names $streams \
      --query 'events[].message' --output text 2>/dev/null | tr '\t' '\n' | grep -vE ': (Message:)?$' || true)"
  fi
  if [[ -n "$failed" ]]; then
    echo "error: the job's data log ($TRANSFORM_LOG_GROUP, $job/...):" >&2
    while IFS= read -r line; do echo "  $line" >&2; done <<<"$failed"
  fi
  exit 1
}
