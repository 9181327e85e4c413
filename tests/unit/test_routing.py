"""The rehearsal's variant router: SageMaker's TargetVariant, sticky sessions, weights, a stable seed."""

from __future__ import annotations

from collections import Counter

import pytest

from rehearsal.routing import RoutingError, Variant, VariantRouter

AB = [Variant("Primary", 90.0), Variant("Challenger", 10.0)]


def test_weights_decide_the_share_and_the_seed_the_sequence() -> None:
    router = VariantRouter(seed=7)
    sequence = [router.choose("ep", AB) for _ in range(2000)]
    again = VariantRouter(seed=7)
    assert [again.choose("ep", AB) for _ in range(2000)] == sequence  # same seed, same picks
    share = Counter(sequence)["Challenger"] / len(sequence)
    assert 0.08 < share < 0.12, share  # 10% of the weight
    other = VariantRouter(seed=8)
    assert [other.choose("ep", AB) for _ in range(2000)] != sequence


def test_a_variant_at_weight_zero_gets_no_unpinned_traffic_but_answers_when_targeted() -> None:
    router = VariantRouter(seed=1)
    shifted = [Variant("Primary", 0.0), Variant("Challenger", 1.0)]
    assert {router.choose("ep", shifted) for _ in range(200)} == {"Challenger"}
    assert router.choose("ep", shifted, target="Primary") == "Primary"


def test_an_unknown_target_variant_is_a_validation_error_naming_the_variants() -> None:
    with pytest.raises(RoutingError) as raised:
        VariantRouter().choose("ep", AB, target="Nope")
    assert "'Nope'" in raised.value.message and "Primary, Challenger" in raised.value.message


def test_no_positive_weight_is_an_error_unless_targeted() -> None:
    idle = [Variant("Primary", 0.0), Variant("Challenger", 0.0)]
    with pytest.raises(RoutingError, match="positive weight"):
        VariantRouter().choose("ep", idle)
    assert VariantRouter().choose("ep", idle, target="Challenger") == "Challenger"


def test_a_session_sticks_to_the_variant_that_opened_it_until_closed() -> None:
    router = VariantRouter(seed=3)
    even = [Variant("Primary", 1.0), Variant("Challenger", 1.0)]
    router.session_opened("s1", "Challenger")
    assert {router.choose("ep", even, session_id="s1") for _ in range(50)} == {"Challenger"}
    assert {router.choose("ep", even, session_id="NEW_SESSION") for _ in range(50)} == {"Primary", "Challenger"}
    router.session_closed("s1")
    assert {router.choose("ep", even, session_id="s1") for _ in range(50)} == {"Primary", "Challenger"}


def test_a_session_of_a_removed_variant_is_routed_by_weight() -> None:
    router = VariantRouter(seed=3)
    router.session_opened("s1", "Challenger")
    assert router.choose("ep", [Variant("Primary", 1.0)], session_id="s1") == "Primary"


def test_instances_are_picked_by_seed_and_sessions_stay_on_theirs() -> None:
    router = VariantRouter(seed=5)
    picks = [router.choose_instance("Primary", 2) for _ in range(40)]
    assert set(picks) == {0, 1}  # requests outside a session reach both instances
    again = VariantRouter(seed=5)
    assert [again.choose_instance("Primary", 2) for _ in range(40)] == picks
    router.session_opened("s1", "Primary", 1)
    assert all(router.choose_instance("Primary", 2, "s1") == 1 for _ in range(10))
    assert VariantRouter(seed=5).choose_instance("Primary", 1) == 0
