"""The bundled instance catalog: lookups, refusals of retired GPU families, prices and their labels."""

from __future__ import annotations

import dataclasses
import re

import pytest
import yaml

from ec2dbn.errors import ConfigError
from ec2dbn.spec import catalog
from ec2dbn.spec.catalog import InstanceType, Price, lookup, on_demand_price

G2_MESSAGE = (
    "g2.2xlarge is a retired previous-generation family: its GRID K520 GPU is compute capability 3.0, "
    "which current CUDA and CuPy cannot run; use g4dn.xlarge (NVIDIA T4) instead"
)


def _cc(cc: str) -> tuple[int, int]:
    major, minor = cc.split(".")
    return int(major), int(minor)


# --- lookup ---------------------------------------------------------------------------------------


def test_lookup_g4dn_xlarge_has_the_t4_facts() -> None:
    t = lookup("g4dn.xlarge")
    assert isinstance(t, InstanceType)
    assert (t.name, t.family, t.gpu_model, t.gpu_count) == ("g4dn.xlarge", "g4dn", "NVIDIA T4", 1)
    assert (t.gpu_memory_gib, t.gpu_compute_capability, t.vcpus, t.memory_gib) == (16, "7.5", 4, 16)
    assert t.previous_generation is False and t.retired is False and t.is_gpu


def test_lookup_is_frozen_and_normalises_case_and_spaces() -> None:
    t = lookup("  G5.XLarge ")
    assert t.name == "g5.xlarge" and t.gpu_model == "NVIDIA A10G" and t.gpu_compute_capability == "8.6"
    with pytest.raises(dataclasses.FrozenInstanceError):
        t.vcpus = 99  # type: ignore[misc]


@pytest.mark.parametrize(
    ("name", "gpu", "count", "cc"),
    [
        ("g6.xlarge", "NVIDIA L4", 1, "8.9"),
        ("g6e.xlarge", "NVIDIA L40S", 1, "8.9"),
        ("p4d.24xlarge", "NVIDIA A100", 8, "8.0"),
        ("p5.48xlarge", "NVIDIA H100", 8, "9.0"),
        ("g4dn.12xlarge", "NVIDIA T4", 4, "7.5"),
    ],
)
def test_lookup_gpu_families(name: str, gpu: str, count: int, cc: str) -> None:
    t = lookup(name)
    assert (t.gpu_model, t.gpu_count, t.gpu_compute_capability) == (gpu, count, cc)


def test_lookup_cpu_type_has_no_gpu() -> None:
    t = lookup("c6i.2xlarge")
    assert t.gpu_model is None and t.gpu_compute_capability is None
    assert t.gpu_count == 0 and not t.is_gpu
    assert (t.vcpus, t.memory_gib, t.family) == (8, 16, "c6i")


def test_g2_is_refused_with_the_exact_message() -> None:
    with pytest.raises(ConfigError) as exc:
        lookup("g2.2xlarge")
    assert str(exc.value) == G2_MESSAGE
    assert exc.value.exit_code == 2


def test_any_g2_size_is_refused_as_retired_not_as_unknown() -> None:
    # g2.4xlarge never existed; it must still get the retirement explanation, not "unknown type".
    with pytest.raises(ConfigError, match=r"^g2\.4xlarge is a retired previous-generation family: its GRID"):
        lookup("g2.4xlarge")
    with pytest.raises(ConfigError, match=r"use g4dn\.12xlarge \(NVIDIA T4\) instead$"):
        lookup("G2.8XLARGE")


@pytest.mark.parametrize(("name", "suggestion"), [("p2.xlarge", "g4dn.xlarge"), ("p2.8xlarge", "g4dn.metal")])
def test_p2_k80_is_refused_below_compute_capability_5(name: str, suggestion: str) -> None:
    with pytest.raises(ConfigError) as exc:
        lookup(name)
    msg = str(exc.value)
    assert msg.startswith(f"{name} is a retired previous-generation family: its Tesla K80 GPU")
    assert "compute capability 3.7" in msg and "CuPy cannot run" in msg
    assert msg.endswith(f"use {suggestion} (NVIDIA T4) instead")
    assert "\n" not in msg


@pytest.mark.parametrize(
    ("name", "gpu", "suggestion"),
    [
        ("p3.2xlarge", "V100 GPU (Volta, compute capability 7.0)", "g5.2xlarge (NVIDIA A10G)"),
        ("p3.16xlarge", "V100 GPU (Volta, compute capability 7.0)", "g5.48xlarge (NVIDIA A10G)"),
        ("p3dn.24xlarge", "V100 GPU (Volta, compute capability 7.0)", "p4d.24xlarge (NVIDIA A100)"),
        ("g3s.xlarge", "Tesla M60 GPU (Maxwell, compute capability 5.2)", "g4dn.xlarge (NVIDIA T4)"),
        ("g3.8xlarge", "Tesla M60 GPU (Maxwell, compute capability 5.2)", "g4dn.12xlarge (NVIDIA T4)"),
        (
            "p3.4xlarge",
            "V100 GPU (Volta, compute capability 7.0)",
            "g5.2xlarge (NVIDIA A10G)",
        ),  # no such size
    ],
)
def test_volta_and_maxwell_are_refused_for_want_of_a_current_driver(
    name: str, gpu: str, suggestion: str
) -> None:
    # NVIDIA's R580 is the last driver branch for Maxwell, Pascal and Volta; the DLAMIs ship newer ones.
    with pytest.raises(ConfigError) as exc:
        lookup(name)
    assert str(exc.value) == (
        f"{name} is a retired previous-generation family: its {gpu} is not supported by NVIDIA drivers "
        "after R580 (the last branch for Maxwell, Pascal and Volta), and current Deep Learning AMIs ship "
        f"newer ones; use {suggestion} instead"
    )
    assert exc.value.exit_code == 2


def test_retirement_follows_from_the_compute_capability_alone() -> None:
    # A new family with a Pascal GPU and no `retired` flag anywhere is still refused, and must say
    # what to use instead or the data file does not load.
    doc = {
        "date": "2025-01-01",
        "source": "test",
        "families": {
            "x9": {
                "gpu": {"model": "NVIDIA P100", "memory_gib": 16, "compute_capability": "6.0"},
                "note": "n",
                "suggest": "x10.large",
                "types": {
                    "x9.large": {"vcpus": 4, "memory_gib": 8, "gpus": 1, "usd_per_hour": {"us-east-1": 1}}
                },
            },
            "x10": {
                "gpu": {"model": "NVIDIA T4", "memory_gib": 16, "compute_capability": "7.5"},
                "note": "n",
                "types": {
                    "x10.large": {"vcpus": 4, "memory_gib": 8, "gpus": 1, "usd_per_hour": {"us-east-1": 1}}
                },
            },
        },
    }
    parsed = catalog._parse(doc)
    assert parsed.types["x9.large"].retired and parsed.types["x9.large"].previous_generation
    assert not parsed.types["x10.large"].retired
    del doc["families"]["x9"]["suggest"]
    with pytest.raises(ValueError, match=r"x9\.large \(x9\) is retired but suggests no type"):
        catalog._parse(doc)


def test_unknown_type_suggests_the_closest_name() -> None:
    with pytest.raises(ConfigError) as exc:
        lookup("g4dn.xlargee")
    assert str(exc.value) == (
        "unknown instance type 'g4dn.xlargee': did you mean g4dn.xlarge? see `ec2dbn catalog`"
    )


def test_unknown_type_never_suggests_a_retired_one() -> None:
    # Closest by spelling to p2.xlarge, but that is refused: suggesting it would be a dead end.
    with pytest.raises(ConfigError) as exc:
        lookup("p2.xlarg")
    assert "p2." not in str(exc.value).split(":", 1)[1]


def test_nonsense_type_has_no_suggestion() -> None:
    with pytest.raises(ConfigError, match=r"^unknown instance type 'banana': it is not in ec2dbn's catalog"):
        lookup("banana")


# --- every entry well-formed ----------------------------------------------------------------------


def test_catalog_covers_the_families_the_stacks_need() -> None:
    families = {t.family for t in catalog.all_types()}
    assert {"g4dn", "g5", "g6", "g6e", "p3", "p4d", "p5", "c6i", "c7i", "m6i", "m7i", "g2", "p2"} <= families
    names = [t.name for t in catalog.all_types()]
    assert len(names) == len(set(names))


def test_every_entry_is_well_formed() -> None:
    for t in catalog.all_types():
        assert re.fullmatch(r"[a-z0-9]+\.[a-z0-9]+", t.name), t.name
        assert t.name.startswith(t.family + ".")
        assert t.vcpus > 0 and t.memory_gib > 0, t.name
        assert t.note, t.name
        price = catalog.list_price(t, "us-east-1")
        assert 0 < price.usd_per_hour < 200, t.name
        if t.is_gpu:
            assert t.gpu_model and t.gpu_model.startswith("NVIDIA "), t.name
            assert t.gpu_memory_gib > 0 and t.gpu_compute_capability, t.name
            if t.retired:
                assert _cc(t.gpu_compute_capability) < (7, 5), t.name
                assert t.previous_generation and t.suggestion, t.name
                assert not lookup(t.suggestion).retired, t.name
            else:
                assert _cc(t.gpu_compute_capability) >= (7, 5), t.name
                assert lookup(t.name) == t
        else:
            assert t.gpu_model is None and t.gpu_count == 0 and t.gpu_compute_capability is None
            assert lookup(t.name) == t


def test_prices_grow_with_size_within_a_family() -> None:
    # A transcription check: within a family and GPU count, more vCPUs never costs less.
    groups: dict[tuple[str, int], list[InstanceType]] = {}
    for t in catalog.all_types():
        groups.setdefault((t.family, t.gpu_count), []).append(t)
    for key, types in groups.items():
        ordered = sorted(types, key=lambda t: t.vcpus)
        prices = [catalog.list_price(t, "us-east-1").usd_per_hour for t in ordered]
        assert prices == sorted(prices), key


def test_data_file_has_a_date_and_a_source() -> None:
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", catalog.catalog_date())
    assert "AWS" in catalog.catalog_source() and "\n" not in catalog.catalog_source()


def test_parse_rejects_an_entry_without_a_base_region_price() -> None:
    doc = yaml.safe_load(
        """
        date: "2025-01-01"
        source: test
        families:
          x1:
            note: n
            types:
              x1.large: {vcpus: 2, memory_gib: 4, usd_per_hour: {eu-west-1: 0.1}}
        """
    )
    with pytest.raises(ValueError, match=r"x1\.large"):
        catalog._parse(doc)


# --- prices ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "usd"),
    [
        ("g4dn.xlarge", 0.526),
        ("g4dn.2xlarge", 0.752),
        ("g5.xlarge", 1.006),
        ("g5.2xlarge", 1.212),
        ("g6.xlarge", 0.8048),
        ("g6e.xlarge", 1.861),
        ("c6i.2xlarge", 0.34),
        ("c7i.2xlarge", 0.357),
    ],
)
def test_us_east_1_list_prices(name: str, usd: float) -> None:
    p = on_demand_price(name, "us-east-1")
    assert isinstance(p, Price)
    assert p.usd_per_hour == pytest.approx(usd)
    assert (p.region, p.market, p.date) == ("us-east-1", "on-demand", catalog.catalog_date())
    assert p.source == f"bundled catalog (us-east-1 list price, {catalog.catalog_date()})"


def test_other_region_falls_back_to_us_east_1_and_says_so() -> None:
    p = on_demand_price("g4dn.xlarge", "sa-east-1")
    assert p.usd_per_hour == pytest.approx(0.526)
    assert p.region == "sa-east-1"
    assert p.source == (
        f"bundled catalog (us-east-1 list price, {catalog.catalog_date()}); region sa-east-1 may differ"
    )


GPU_REGIONS = ("us-east-1", "us-east-2", "us-west-2", "eu-west-1", "eu-central-1", "ap-northeast-1")


@pytest.mark.parametrize(
    ("name", "region", "usd"),
    [  # AWS Price List figures as recorded in skypilot-org/skypilot-catalog@001367d2 (see catalog.yaml)
        ("g4dn.xlarge", "eu-west-1", 0.587),
        ("g4dn.xlarge", "eu-central-1", 0.658),
        ("g4dn.xlarge", "ap-northeast-1", 0.71),
        ("g4dn.xlarge", "us-west-2", 0.526),
        ("g5.xlarge", "eu-west-1", 1.123),
        ("g5.2xlarge", "ap-northeast-1", 1.75776),
        ("g6.xlarge", "eu-central-1", 1.0064),
        ("g6e.48xlarge", "ap-northeast-1", 43.69912),
    ],
)
def test_regional_list_prices(name: str, region: str, usd: float) -> None:
    p = on_demand_price(name, region)
    assert p.usd_per_hour == pytest.approx(usd) and p.region == region
    assert p.source == f"bundled catalog ({region} list price, {catalog.catalog_date()})"


def test_every_current_gpu_type_has_its_own_price_in_the_gpu_regions() -> None:
    """g4dn/g5/g6/g6e in all six regions (g6 and g6e are not offered in eu-west-1: no price, no guess);
    p4d/p5 only in us-east-1 (the regional source predates AWS's June 2025 P4/P5 reduction)."""
    for t in catalog.all_types():
        if not t.is_gpu or t.retired:
            continue
        own = [r for r in GPU_REGIONS if "may differ" not in catalog.list_price(t, r).source]
        if t.family in ("g4dn", "g5"):
            assert own == list(GPU_REGIONS), t.name
        elif t.family in ("g6", "g6e"):
            assert own == [r for r in GPU_REGIONS if r != "eu-west-1"], t.name
        else:
            assert own == ["us-east-1"], t.name


@pytest.mark.parametrize("name", ["c5.xlarge", "p5e.48xlarge", "p6-b200.48xlarge", "u-6tb1.metal"])
def test_well_formed_names_outside_the_catalog_pass_the_offline_check(name: str) -> None:
    assert catalog.check_name(name.upper()) == name
    assert catalog.bundled_price(name, "us-east-1") is None  # price unknown, never a guess
    with pytest.raises(ConfigError, match="unknown instance type"):
        lookup(name)  # the catalog's own lookup still says it does not list it


@pytest.mark.parametrize("name", ["banana", "g4dn", "g4dn.", ".xlarge", "g4dn xlarge", "g4dn.x.large"])
def test_malformed_names_are_refused_offline(name: str) -> None:
    with pytest.raises(ConfigError, match="is not an instance type name"):
        catalog.check_name(name)


@pytest.mark.parametrize(
    ("name", "cc"), [("g2.2xlarge", "3.0"), ("g2.16xlarge", "3.0"), ("p3.2xlarge", "7.0")]
)
def test_retired_families_are_refused_offline(name: str, cc: str) -> None:
    with pytest.raises(ConfigError, match=f"compute capability {cc}"):
        catalog.check_name(name)


def test_a_type_ec2_describes_is_built_from_its_description() -> None:
    t = catalog.describe(
        "p5e.48xlarge",
        vcpus=192,
        memory_gib=2048,
        gpu_model="H200",
        gpu_manufacturer="NVIDIA",
        gpu_count=8,
        gpu_memory_gib=141,
    )
    assert (t.gpu_model, t.gpu_count, t.gpu_compute_capability, t.vcpus, t.retired) == (
        "NVIDIA H200",
        8,
        "9.0",
        192,
        False,
    )
    cpu = catalog.describe("c5.xlarge", vcpus=4, memory_gib=8)
    assert (cpu.is_gpu, cpu.gpu_model, cpu.vcpus, cpu.note) == (
        False,
        None,
        4,
        "described by EC2 (not in ec2dbn's catalog)",
    )
    # The catalog's own entry wins when there is one.
    assert catalog.describe("g4dn.xlarge", vcpus=1, memory_gib=1) == lookup("g4dn.xlarge")


@pytest.mark.parametrize(("gpu", "cc"), [("M60", "5.2"), ("K80", "3.7"), ("V100", "7.0")])
def test_the_retirement_rule_applies_to_described_gpus(gpu: str, cc: str) -> None:
    with pytest.raises(ConfigError, match=rf"compute capability {cc}.*use g4dn.xlarge"):
        catalog.describe(
            "x9.large", vcpus=4, memory_gib=16, gpu_model=gpu, gpu_manufacturer="NVIDIA", gpu_count=1
        )


def test_unknown_or_non_nvidia_gpus_are_not_retired() -> None:
    new = catalog.describe(
        "g7.2xlarge", vcpus=8, memory_gib=32, gpu_model="RTX PRO 4500", gpu_manufacturer="NVIDIA", gpu_count=1
    )
    amd = catalog.describe(
        "g4ad.xlarge",
        vcpus=4,
        memory_gib=16,
        gpu_model="Radeon Pro V520",
        gpu_manufacturer="AMD",
        gpu_count=1,
    )
    assert (new.retired, new.gpu_compute_capability) == (False, None)
    assert (amd.retired, amd.gpu_model) == (False, "AMD Radeon Pro V520")


@pytest.mark.parametrize(
    ("name", "why", "usd"), [("g2.2xlarge", "GRID K520", 0.65), ("p3.2xlarge", "after R580", 3.06)]
)
def test_price_of_retired_type_is_refused_but_listable(name: str, why: str, usd: float) -> None:
    with pytest.raises(ConfigError, match=why):
        on_demand_price(name, "us-east-1")
    entry = next(t for t in catalog.all_types() if t.name == name)
    assert entry.retired and catalog.list_price(entry, "us-east-1").usd_per_hour == pytest.approx(usd)


@pytest.mark.parametrize("region", ["us-east-1a", "virginia", "", "US EAST 1"])
def test_bad_region_is_a_config_error(region: str) -> None:
    with pytest.raises(ConfigError, match="is not an AWS region; "):
        on_demand_price("g4dn.xlarge", region)


@pytest.mark.parametrize(
    ("typed", "said"),
    [
        ("us-esat-1", "did you mean us-east-1?"),  # a swap is one edit: not us-west-1
        ("eu-wset-2", "did you mean eu-west-2?"),
        ("ap-southeast2", "did you mean ap-southeast-2?"),
        (" US-EAST-1", "did you mean us-east-1?"),
        ("us-east-9", "did you mean us-east-1 or us-east-2?"),
    ],
)
def test_a_mistyped_region_gets_did_you_mean_instead_of_the_whole_list(typed: str, said: str) -> None:
    with pytest.raises(ConfigError) as exc:
        catalog.check_region(typed)
    assert str(exc.value) == f"{typed!r} is not an AWS region; {said}"
    with pytest.raises(ConfigError, match=r"'mars-1' is not an AWS region; known: af-south-1, .*us-west-2"):
        catalog.check_region("mars-1")
