# shellcheck shell=bash
# A/B tests on one endpoint, sourced by deploy_to_sagemaker.sh: `shift` moves traffic between the
# production variants, `promote` ends the test. Uses the main script's settings and helpers
# (aws_change, endpoint_status, wait_for_endpoint, scaled_resources, remove_scaling, state_set).

# The endpoint's variants as "name<TAB>weight<TAB>instances" lines; dies unless it is InService.
serving_variants() {
  local status; status="$(endpoint_status)" || exit 1
  case "$status" in
    InService) ;;
    Missing) die "endpoint $ENDPOINT_NAME does not exist" ;;
    *) die "endpoint $ENDPOINT_NAME is $status: wait until it is InService" ;;
  esac
  aws sagemaker describe-endpoint --endpoint-name "$ENDPOINT_NAME" \
    --query 'ProductionVariants[].[VariantName,CurrentWeight,CurrentInstanceCount]' --output text \
    || die "cannot describe endpoint $ENDPOINT_NAME"
}

# The traffic split of "name<TAB>weight" lines, e.g. "Primary 75% (weight 75), Challenger 25% (weight 25)".
traffic_split() {
  awk -F'\t' '{ w = ($2 == "None" ? 1 : $2); name[NR] = $1; weight[NR] = w; total += w }
    END { for (i = 1; i <= NR; i++) printf "%s%s %.4g%% (weight %g)", (i > 1 ? ", " : ""), name[i],
                                            (total > 0 ? 100 * weight[i] / total : 0), weight[i] }'
}

# shift VARIANT:WEIGHT...: UpdateEndpointWeightsAndCapacities, then wait for InService. Weights are
# relative (SageMaker's); variants not named keep theirs.
cmd_shift() {
  local current pair name weight entries=() planned
  current="$(serving_variants)" || exit 1
  planned="$current"
  for pair in "$@"; do
    name="${pair%%:*}"; weight="${pair#*:}"
    [[ "$weight" =~ $WEIGHT_PATTERN ]] || die "the weight in '$pair' must be a number >= 0"
    awk -F'\t' -v n="$name" '$1 == n { found = 1 } END { exit !found }' <<<"$current" \
      || die "endpoint $ENDPOINT_NAME has no variant $name (it has: $(cut -f1 <<<"$current" | paste -sd' ' -))"
    entries+=("VariantName=$name,DesiredWeight=$weight")
    planned="$(awk -F'\t' -v OFS='\t' -v n="$name" -v w="$weight" '$1 == n { $2 = w } { print }' <<<"$planned")"
  done
  awk -F'\t' '{ total += ($2 == "None" ? 1 : $2) } END { exit !(total > 0) }' <<<"$planned" \
    || die "these weights send no traffic anywhere: give at least one variant a weight above 0"
  aws_change sagemaker update-endpoint-weights-and-capacities --endpoint-name "$ENDPOINT_NAME" \
    --desired-weights-and-capacities "${entries[@]}" >/dev/null
  if [[ "$DRY_RUN" == 1 ]]; then
    echo "DRY-RUN: wait until $ENDPOINT_NAME is InService" >&3
    info "traffic would be: $(traffic_split <<<"$planned")"
    return 0
  fi
  wait_for_endpoint || die "the weight change of $ENDPOINT_NAME did not reach InService"
  info "traffic now: $(serving_variants | traffic_split)"
}

# promote VARIANT: end the A/B test in the order that never leaves traffic on a variant being
# removed and never leaves autoscaling on a variant that no longer exists:
#   1. all traffic to VARIANT (weights VARIANT 1, the others 0), wait: the others go idle at once;
#   2. the other variants' scaling policies deleted and their scalable targets deregistered
#      (VARIANT keeps its autoscaling throughout: it now serves everything and may need to scale out);
#   3. a new endpoint config with VARIANT alone (its model, instance type and AMI as they are);
#   4. update-endpoint --retain-all-variant-properties (VARIANT keeps its current instance count), wait.
# A failed update rolls back to the old config with the others still at weight 0: nothing is lost,
# and `autoscale` registers their scaling again.
cmd_promote() {
  local current winner="$1" losers entries=() loser
  current="$(serving_variants)" || exit 1
  awk -F'\t' -v n="$winner" '$1 == n { found = 1 } END { exit !found }' <<<"$current" \
    || die "endpoint $ENDPOINT_NAME has no variant $winner (it has: $(cut -f1 <<<"$current" | paste -sd' ' -))"
  losers="$(awk -F'\t' -v n="$winner" '$1 != n { print $1 }' <<<"$current")"
  [[ -n "$losers" ]] || die "$winner is already the only variant of $ENDPOINT_NAME: nothing to promote"
  awk -F'\t' -v n="$winner" '$1 == n && $3 != "None" && $3 + 0 < 1 { bad = 1 } END { exit bad }' <<<"$current" \
    || die "variant $winner has no instances: it cannot take the traffic"
  entries=("VariantName=$winner,DesiredWeight=1")
  for loser in $losers; do entries+=("VariantName=$loser,DesiredWeight=0"); done
  info "promoting $winner: all traffic to it first"
  aws_change sagemaker update-endpoint-weights-and-capacities --endpoint-name "$ENDPOINT_NAME" \
    --desired-weights-and-capacities "${entries[@]}" >/dev/null
  if [[ "$DRY_RUN" == 1 ]]; then
    echo "DRY-RUN: wait until $ENDPOINT_NAME is InService" >&3
  else
    wait_for_endpoint || die "the weight change of $ENDPOINT_NAME did not reach InService; nothing was removed"
  fi
  local scaled="" resource resources
  resources="$(scaled_resources)" || exit 1  # a failed lookup must stop the promotion, not look like "none"
  for resource in $resources; do
    [[ "$resource" == "endpoint/$ENDPOINT_NAME/variant/$winner" ]] || scaled+="${scaled:+ }$resource"
  done
  [[ -z "$scaled" ]] || remove_scaling "$scaled" keep-alarm
  local old_config new_config variant
  old_config="$(aws sagemaker describe-endpoint --endpoint-name "$ENDPOINT_NAME" --query EndpointConfigName --output text)"
  variant="$(aws sagemaker describe-endpoint-config --endpoint-config-name "$old_config" \
    --query "ProductionVariants[?VariantName=='$winner']" --output json \
    | "$PYTHON" -c 'import json,sys; v=json.load(sys.stdin); v[0]["InitialVariantWeight"]=1.0; print(json.dumps(v))')" \
    || die "cannot read variant $winner from endpoint config $old_config"
  new_config="$MODEL_NAME-config-$(date -u +%s)-$RANDOM"
  aws_change sagemaker create-endpoint-config --endpoint-config-name "$new_config" --production-variants "$variant" \
    --tags "Key=$TAG_KEY,Value=$ENDPOINT_NAME" >/dev/null
  aws_change sagemaker update-endpoint --endpoint-name "$ENDPOINT_NAME" --endpoint-config-name "$new_config" \
    --retain-all-variant-properties >/dev/null
  if [[ "$DRY_RUN" == 1 ]]; then
    echo "DRY-RUN: wait until $ENDPOINT_NAME is InService" >&3
    return 0
  fi
  wait_for_endpoint "$new_config" || die "the update of $ENDPOINT_NAME to $new_config (only $winner) did not reach InService: all \
traffic stays on $winner; run 'autoscale' to register the other variants' scaling again"
  state_set CONFIG "$new_config"
  info "promoted $winner: it serves all traffic of $ENDPOINT_NAME; removed: $(paste -sd' ' - <<<"$losers") (their models \
stay until 'delete'). Deploy the winner next time with its settings as the plain ones (VARIANT_NAME=$winner, MODEL_DIR, ...)"
}
