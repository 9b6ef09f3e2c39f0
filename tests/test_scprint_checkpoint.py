"""Reading scPRINT checkpoints safely and converting them: allow-list, refusals, the card, the command.

Every refusal is one InputError and leaves no output. The checkpoints here are the committed fixtures (made by
scPRINT's own class, tests/data/scprint_small.ckpt, v1 layout, and scprint_v2_small.ckpt) and variants of the v1
one written by the tests."""

import fractions
import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.fabric.utilities.data import AttributeDict

from grnformer.api import import_scprint
from grnformer.bundle.checkpoint import load_bundle
from grnformer.cli import main
from grnformer.errors import InputError
from grnformer.interop.scprint_checkpoint import safe_load

CKPT = Path(__file__).parent / "data" / "scprint_small.ckpt"
CKPT_V2 = Path(__file__).parent / "data" / "scprint_v2_small.ckpt"


@pytest.fixture(scope="module")
def original():
    return safe_load(CKPT)


def _variant(tmp_path, original, change, name="variant.ckpt") -> Path:
    obj = {**original, "hyper_parameters": dict(original["hyper_parameters"]),
           "state_dict": dict(original["state_dict"])}
    change(obj)
    path = tmp_path / name
    torch.save(obj, path)
    return path


def _refused(tmp_path, ckpt, match):
    out = tmp_path / "out" / "model.pt"
    out.parent.mkdir(exist_ok=True)
    with pytest.raises(InputError, match=match):
        import_scprint(ckpt, out)
    assert list(out.parent.iterdir()) == []  # nothing written, no .part left


def test_card_says_where_it_came_from_and_what_was_left_out(tmp_path, original):
    out = tmp_path / "small.pt"
    card = import_scprint(CKPT, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["small.json", "small.pt"]
    assert card["source_sha256"] == hashlib.sha256(CKPT.read_bytes()).hexdigest()
    assert (card["layout"], card["input_normalisation"]) == ("v1", "sum")
    assert card["shapes"] == {"d_model": 128, "n_layers": 4, "n_heads": 2, "mlp_hidden": 512,
                              "n_parameters_carried": card["shapes"]["n_parameters_carried"]}
    genes = card["genes"]
    hp_genes = original["hyper_parameters"]["genes"]
    # the fixture's IDs outside grnformer's vocabulary (non-coding genes) are counted and listed, not dropped silently
    assert genes["in_checkpoint"] == len(hp_genes) == genes["converted"] + genes["not_in_grnformer_vocabulary"]
    assert genes["not_in_grnformer_vocabulary"] == 4
    assert set(genes["not_in_grnformer_vocabulary_examples"]) <= set(hp_genes[-5:])
    assert genes["vocabulary_genes_without_checkpoint_vector"]["mouse"] > 20_000  # 20 mouse genes in the table
    assert any("discriminator" in s for s in card["not_carried_over"])
    assert any("MVC" in s for s in card["not_carried_over"])
    assert card["labels"]["cell_type"]["coarse"] == {"CL:0000084": ["CL:0000624", "CL:0000625"],
                                                     "CL:0000576": ["CL:0001054", "CL:0002396"]}
    assert card["labels"]["sex"] == {"leaves": ["PATO:0000383", "PATO:0000384"], "coarse": {}}
    bundle = load_bundle(out)
    cell_type = bundle.labels.encoders["cell_type"]
    assert cell_type.leaves[:2] == ["CL:0000236", "CL:0000624"] and cell_type.coarse == ["CL:0000084", "CL:0000576"]
    t_cell = cell_type.descendants[0]  # T cell -> its CD4 and CD8 leaves, as scPRINT's labels_hierarchy says
    assert [cell_type.leaves[i] for i in np.flatnonzero(t_cell)] == ["CL:0000624", "CL:0000625"]
    assert cell_type.code("CL:0000084") == 8 + 0  # a coarse term codes after the leaves
    with pytest.raises(InputError, match="already exists"):
        import_scprint(CKPT, out)


def test_command_writes_bundle_and_info_describes_it(tmp_path, capsys):
    out = tmp_path / "small.pt"
    assert main(["import-scprint", str(CKPT), str(out)]) == 0
    said = capsys.readouterr().out
    assert "2,021 of 2,025 genes converted, 4 outside grnformer's vocabulary" in said
    assert main(["info", str(out)]) == 0
    info = capsys.readouterr().out
    assert "converted from  scPRINT v1 checkpoint scprint_small.ckpt" in info and "'sum'" in info
    assert main(["import-scprint", str(out), str(tmp_path / "again.pt")]) == 2  # a grnformer bundle: refused
    assert "not a scPRINT one" in capsys.readouterr().err


def test_allow_list_reads_lightning_and_numpy_types(tmp_path, original):
    def lightning_types(obj):
        hp = AttributeDict(obj["hyper_parameters"])
        hp["gene_pos_enc"] = np.asarray(hp["gene_pos_enc"], dtype=np.int64).tolist()
        hp["lr"] = np.float64(1e-4)
        hp["precpt_gene_emb"] = Path("/data/embeddings.parquet")
        obj["hyper_parameters"] = hp

    path = _variant(tmp_path, original, lightning_types)
    assert load_bundle(path).config.d_model == 128


def test_types_outside_the_allow_list_are_named_and_never_built(tmp_path, original):
    path = _variant(tmp_path, original, lambda o: o["hyper_parameters"].update(ratio=fractions.Fraction(1, 3)))
    _refused(tmp_path, path, r"outside grnformer's allow-list \(fractions\.Fraction\)")
    module = _variant(tmp_path, original, lambda o: o.update(model=torch.nn.Linear(2, 2)), "module.ckpt")
    _refused(tmp_path, module, r"torch\.nn\.modules\.linear\.Linear")


def test_truncated_or_corrupt_files_get_one_message(tmp_path):
    data = CKPT.read_bytes()
    for name, content in (("truncated.ckpt", data[: len(data) // 2]), ("tail.ckpt", data[:-100]),
                          ("noise.ckpt", np.random.default_rng(0).bytes(5000))):
        path = tmp_path / name
        path.write_bytes(content)
        _refused(tmp_path, path, "damaged")


def test_another_models_checkpoint_is_refused(tmp_path):
    path = tmp_path / "other.ckpt"
    torch.save({"state_dict": {"encoder.layer.0.weight": torch.zeros(4, 4)}, "hyper_parameters": {"lr": 0.1},
                "pytorch-lightning_version": "2.6.6"}, path)
    _refused(tmp_path, path, "neither a bundle.*nor a scPRINT checkpoint")


def test_features_no_network_reproduces_are_refused_by_name(tmp_path, original):
    def metacell(obj):
        obj["hyper_parameters"]["use_metacell_token"] = True
        obj["state_dict"]["metacell_encoder.embedding.weight"] = torch.zeros(2, 128)

    def quantised(obj):
        obj["hyper_parameters"]["compress_class_dim"] = {"cell_type_ontology_term_id": 18}

    for change, what in ((metacell, "a metacell token"), (quantised, "quantised class embeddings")):
        _refused(tmp_path, _variant(tmp_path, original, change), f"uses {what}, which grnformer does not reproduce")


def test_v2_settings_that_contradict_the_weights_are_refused(tmp_path, original):
    def gqa(obj):  # v1 weights (one key/value head per query head) said to use grouped-query attention
        obj["hyper_parameters"]["num_heads_kv"] = 1

    def depth_in_decoder(obj):  # a decoder without the depth column
        obj["hyper_parameters"]["depth_atinput"] = False

    def cell_blocks(obj):  # said to have cell-specific layers, but holds none
        obj["hyper_parameters"]["cell_specific_blocks"] = True

    for change, what in ((gqa, r"num_heads_kv 1.*Wqkv"), (depth_in_decoder, r"expr_decoder\.fc\.0\.weight"),
                         (cell_blocks, "holds 0 cell-specific layers")):
        _refused(tmp_path, _variant(tmp_path, original, change), f"{what}.*the checkpoint is inconsistent")


def test_v2_card_and_info_say_what_the_layout_holds(tmp_path, capsys):
    out = tmp_path / "v2.pt"
    assert main(["import-scprint", str(CKPT_V2), str(out)]) == 0
    card = import_scprint(CKPT_V2, tmp_path / "again.pt")
    assert (card["layout"], card["architecture"], card["input_normalisation"]) == ("v2", "scprint-v2", "log")
    assert card["shapes"]["n_heads_kv"] == 2 and card["shapes"]["cell_layers"] == 6
    assert card["shapes"]["depth"] == "given to the expression decoder"
    capsys.readouterr()
    assert main(["info", str(out)]) == 0
    info = capsys.readouterr().out
    assert "scPRINT v2 layers (2 key/value heads, 6 cell-specific layers, depth in the decoder)" in info
    assert "converted from  scPRINT v2 checkpoint scprint_v2_small.ckpt" in info and "'log'" in info


def test_unknown_weights_or_settings_are_refused(tmp_path, original):
    extra = _variant(tmp_path, original, lambda o: o["state_dict"].update({"adapter.weight": torch.zeros(2)}))
    _refused(tmp_path, extra, "weight 'adapter.weight' is not part of scPRINT's v1 layout")
    binned = _variant(tmp_path, original, lambda o: o["hyper_parameters"].update(expr_emb_style="binned_pos"))
    _refused(tmp_path, binned, "expr_emb_style='binned_pos'")
    no_names = _variant(tmp_path, original, lambda o: o["hyper_parameters"].update(label_decoders={}))
    _refused(tmp_path, no_names, "label_decoders are incomplete")


def test_a_model_trained_without_positions_converts_and_a_short_gene_table_is_refused(tmp_path, original):
    no_positions = _variant(tmp_path, original, lambda o: o["state_dict"].pop("pos_encoder.pe"), "nopos.ckpt")
    assert not load_bundle(no_positions).model.gene_position_vectors.any()

    def short(obj):
        obj["state_dict"]["gene_encoder.embeddings.weight"] = obj["state_dict"]["gene_encoder.embeddings.weight"][:-1]

    _refused(tmp_path, _variant(tmp_path, original, short), "does not hold one 128-wide row per gene")


class _Payload:
    """A pickle that would run a shell command when loaded without restrictions."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


def test_a_checkpoint_that_would_run_code_is_refused_and_runs_nothing(tmp_path, original):
    marker = tmp_path / "ran"
    path = _variant(tmp_path, original, lambda o: o["hyper_parameters"].update(hook=_Payload(marker)))
    _refused(tmp_path, path, r"allow-list \((posix|os)\.system\)")
    with pytest.raises(InputError, match="allow-list"):
        load_bundle(path)
    assert not marker.exists()


def test_legacy_format_files_load_safely_too(tmp_path):
    legacy = tmp_path / "legacy.pt"
    torch.save({"w": torch.ones(2)}, legacy, _use_new_zipfile_serialization=False)
    assert torch.equal(safe_load(legacy)["w"], torch.ones(2))
    torch.save({"f": fractions.Fraction(1, 2)}, legacy, _use_new_zipfile_serialization=False)
    with pytest.raises(InputError, match=r"allow-list \(fractions\.Fraction\)"):  # torch's safe unpickler refuses
        safe_load(legacy)
