"""Evaluation tools: hand-computed MOT and MTMC figures, input errors, and real MOT15 data."""

from __future__ import annotations

import contextlib
import io
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import trackeval

from configs import REPO_ROOT, data_root
from pipeline.motio import MOTFormatError, read_mot_rows, write_mot_results
from tools import eval_mot
from tools.evaluation import MOT_METRICS, evaluate_mot, evaluate_mtmc

MOT15 = data_root() / "mot15"
needs_mot15 = pytest.mark.skipif(not MOT15.is_dir(), reason=f"MOT15 data not found at {MOT15} (set MTMC_DATA)")

BOX_A, BOX_B, BOX_FAR = (10, 10, 20, 40), (100, 10, 20, 40), (300, 300, 20, 40)


def mot_lines(rows: list[tuple]) -> str:
    """``(frame, id, (x, y, w, h))`` -> MOTChallenge lines with conf 1 (gt: not ignored)."""
    return "".join(f"{f},{i},{x},{y},{w},{h},1,-1,-1,-1\n" for f, i, (x, y, w, h) in rows)


def make_sequence(root: Path, name: str, gt_rows: list[tuple], length: int) -> Path:
    seq = root / name
    (seq / "gt").mkdir(parents=True)
    (seq / "gt" / "gt.txt").write_text(mot_lines(gt_rows))
    (seq / "seqinfo.ini").write_text(f"[Sequence]\nname={name}\nframeRate=25\nseqLength={length}\n")
    return seq


@pytest.fixture
def hand_case(tmp_path: Path) -> tuple[Path, Path]:
    """Two people over 4 frames; the tracker follows A, switches B's id at frame 3, misses B at 4, adds one FP."""
    gt = [(f, 1, BOX_A) for f in range(1, 5)] + [(f, 2, BOX_B) for f in range(1, 5)]
    make_sequence(tmp_path / "gt", "hand", gt, length=4)
    pred = [(f, 10, BOX_A) for f in range(1, 5)]
    pred += [(1, 20, BOX_B), (2, 20, BOX_B), (3, 21, BOX_B), (2, 30, BOX_FAR)]
    (tmp_path / "pred").mkdir()
    (tmp_path / "pred" / "hand.txt").write_text(mot_lines(pred))
    return tmp_path / "gt", tmp_path / "pred"


def test_hand_made_mot_case_matches_hand_computed_metrics(hand_case):
    result = evaluate_mot(*hand_case)["hand"]
    # CLEAR: 8 gt boxes; TP 7, FN 1 (B at frame 4), FP 1 (frame 2), IDSW 1 (B: 20 -> 21).
    # MOTA = 1 - (FN + FP + IDSW) / GT = 1 - 3/8 = 0.625.
    assert (result["FN"], result["FP"], result["IDSW"]) == (1, 1, 1)
    assert result["MOTA"] == pytest.approx(0.625)
    # Identity: best one-to-one ids are A<->10 (4 boxes) and B<->20 (2 boxes): IDTP 6 of 8 gt and 8 predicted.
    # IDF1 = 2 * 6 / (8 + 8) = 0.75, IDP = IDR = 6/8.
    assert result["IDF1"] == pytest.approx(0.75)
    assert result["IDP"] == pytest.approx(0.75) and result["IDR"] == pytest.approx(0.75)
    # HOTA (every IoU is 1 or 0, so every threshold agrees): DetA = TP / (TP + FN + FP) = 7/9.
    # AssA = mean over the 7 TPs of TPA / (TPA + FNA + FPA): A<->10: 4 TPs at 4/4; B<->20: 2 TPs at 2/4;
    # B<->21: 1 TP at 1/4 -> (4 + 1 + 0.25) / 7 = 0.75. HOTA = sqrt(DetA * AssA) = sqrt(7/12).
    assert result["DetA"] == pytest.approx(7 / 9)
    assert result["AssA"] == pytest.approx(0.75)
    assert result["HOTA"] == pytest.approx(math.sqrt(7 / 12))
    # A is tracked 4/4 (mostly tracked), B 3/4 = 75% < 80% (partly tracked).
    assert (result["MT"], result["ML"]) == (1, 0)


def test_combined_pools_the_sequences_counts(hand_case):
    gt_root, pred_dir = hand_case
    # a second sequence, one person tracked perfectly over 4 frames: 4 TPs, IDTP 4, AssA 1
    make_sequence(gt_root, "easy", [(f, 1, BOX_A) for f in range(1, 5)], length=4)
    (pred_dir / "easy.txt").write_text(mot_lines([(f, 5, BOX_A) for f in range(1, 5)]))
    results = evaluate_mot(gt_root, pred_dir)
    combined, hand = results["COMBINED"], results["hand"]
    assert results["easy"]["MOTA"] == results["easy"]["IDF1"] == results["easy"]["HOTA"] == pytest.approx(1.0)
    # CLEAR sums counts: GT 12, FN 1, FP 1, IDSW 1 -> MOTA 1 - 3/12 (not the mean 0.8125 of 0.625 and 1)
    assert (combined["FN"], combined["FP"], combined["IDSW"]) == (1, 1, 1)
    assert combined["MOTA"] == pytest.approx(0.75)
    # Identity sums IDTP: (6 + 4) of 12 gt and 12 predicted boxes
    assert combined["IDF1"] == pytest.approx(20 / 24)
    # HOTA: DetA = 11 / 13; AssA weighted by TPs = (7 * 0.75 + 4 * 1) / 11
    assert combined["DetA"] == pytest.approx(11 / 13)
    assert combined["AssA"] == pytest.approx(9.25 / 11)
    assert combined["HOTA"] == pytest.approx(math.sqrt(9.25 / 13))
    assert hand["MOTA"] == pytest.approx(0.625)  # the per-sequence figures stay their own


def test_empty_prediction_file_gives_all_false_negatives(hand_case):
    gt_root, pred_dir = hand_case
    (pred_dir / "hand.txt").write_text("")
    result = evaluate_mot(gt_root, pred_dir)["hand"]
    assert (result["FN"], result["FP"], result["IDSW"]) == (8, 0, 0)
    assert (result["MOTA"], result["IDF1"], result["HOTA"]) == (0.0, 0.0, 0.0)


def test_malformed_ground_truth_line_names_file_and_line(hand_case):
    gt_root, pred_dir = hand_case
    gt_file = gt_root / "hand" / "gt" / "gt.txt"
    lines = gt_file.read_text().splitlines(keepends=True)
    lines[2] = "3,1,10,ten,20,40,1,-1,-1,-1\n"
    gt_file.write_text("".join(lines))
    with pytest.raises(MOTFormatError, match=rf"{gt_file}:3: non-numeric"):
        evaluate_mot(gt_root, pred_dir)


def test_cli_reports_malformed_prediction_without_traceback(hand_case):
    gt_root, pred_dir = hand_case
    pred_file = pred_dir / "hand.txt"
    pred_file.write_text("1,10,10,10,20,40,1,-1,-1,-1\n2,10,10\n")
    run = subprocess.run(
        [sys.executable, "tools/eval_mot.py", "--gt", str(gt_root), "--pred", str(pred_dir)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
    )
    assert run.returncode == 1
    assert run.stderr.startswith(f"error: {pred_file}:2: expected at least 6 columns")
    assert "Traceback" not in run.stderr


def test_missing_prediction_is_an_error_unless_seqs_limits(hand_case, tmp_path):
    gt_root, pred_dir = hand_case
    make_sequence(gt_root, "other", [(1, 1, BOX_A)], length=1)
    with pytest.raises(FileNotFoundError, match=r"other\.txt"):
        evaluate_mot(gt_root, pred_dir)
    assert set(evaluate_mot(gt_root, pred_dir, seqs=["hand"])) == {"hand", "COMBINED"}


@pytest.mark.parametrize(
    "extra_row, message",
    [
        ((5, 10, BOX_A), r"hand\.txt: frame 5 is beyond the sequence length 4"),
        ((3, 10, BOX_FAR), r"hand\.txt: track id 10 appears more than once in frame 3"),
        ((3, -1, BOX_FAR), r"hand\.txt: negative track id -1 in frame 3"),
    ],
)
def test_invalid_prediction_rows_are_rejected_with_their_file(hand_case, extra_row, message):
    gt_root, pred_dir = hand_case
    with (pred_dir / "hand.txt").open("a") as handle:
        handle.write(mot_lines([extra_row]))
    with pytest.raises(MOTFormatError, match=message):
        evaluate_mot(gt_root, pred_dir)


def test_cli_json_holds_the_library_numbers(hand_case, tmp_path, capsys):
    out = tmp_path / "metrics.json"
    assert eval_mot.main(["--gt", str(hand_case[0]), "--pred", str(hand_case[1]), "--json", str(out)]) == 0
    table = capsys.readouterr().out
    assert "62.5" in table.splitlines()[1]  # MOTA of the hand case, as a percentage
    assert json.loads(out.read_text()) == evaluate_mot(*hand_case)


# ---------------------------------------------------------------- multi camera

CAMERA_FRAMES = {1: 4, 2: 3, 3: 5}  # camera -> frames where both people are visible


def write_aic(path: Path, rows: list[tuple]) -> None:
    path.write_text("".join(f"{c} {i} {f} {x} {y} {w} {h} -1 -1\n" for c, i, f, (x, y, w, h) in rows))


def two_people(camera: int, id_a: int, id_b: int) -> list[tuple]:
    frames = range(1, CAMERA_FRAMES[camera] + 1)
    return [(camera, id_a, f, BOX_A) for f in frames] + [(camera, id_b, f, BOX_B) for f in frames]


def test_mtmc_idf1_with_one_camera_permuted(tmp_path):
    gt = tmp_path / "gt.txt"
    write_aic(gt, [row for cam in CAMERA_FRAMES for row in two_people(cam, 1, 2)])
    # Predictions as per-camera MOT files (c001.txt.. map onto gt camera ids 1..); camera 3 swaps the ids.
    pred = tmp_path / "pred"
    pred.mkdir()
    for cam in CAMERA_FRAMES:
        ids = (2, 1) if cam == 3 else (1, 2)
        rows = [(f, i, box) for _, i, f, box in two_people(cam, *ids)]
        (pred / f"c{cam:03d}.txt").write_text(mot_lines(rows))

    result = evaluate_mtmc(gt, pred)
    # Each person has 4 + 3 + 5 = 12 gt boxes, 24 in all, and 24 predicted. Predicted id 1 covers person 1 in
    # cameras 1-2 (7 boxes) and person 2 in camera 3 (5); id 2 the reverse. The best global matching is
    # 1<->1, 2<->2: IDTP = 7 + 7 = 14 (the swap would give 5 + 5). IDF1 = 2 * 14 / (24 + 24) = 7/12.
    mtmc = result["MTMC"]
    assert (mtmc["IDTP"], mtmc["IDFP"], mtmc["IDFN"]) == (14, 10, 10)
    assert mtmc["IDF1"] == pytest.approx(7 / 12)
    assert mtmc["IDP"] == pytest.approx(14 / 24) and mtmc["IDR"] == pytest.approx(14 / 24)
    assert set(result["per_camera"]) == {"1", "2", "3"}
    for camera in result["per_camera"].values():
        assert camera["IDF1"] == pytest.approx(1.0) and camera["HOTA"] == pytest.approx(1.0)


def test_mtmc_malformed_line_and_unknown_camera(tmp_path):
    gt = tmp_path / "gt.txt"
    write_aic(gt, two_people(1, 1, 2))
    bad = tmp_path / "bad.txt"
    bad.write_text("1 1 1 10 10 20 40\n1,1,0,10,10,20,40\n")
    with pytest.raises(MOTFormatError, match=rf"{bad}:2: frame must be an integer >= 1"):
        evaluate_mtmc(gt, bad)
    other_camera = tmp_path / "other.txt"
    write_aic(other_camera, two_people(2, 1, 2))
    with pytest.raises(MOTFormatError, match=r"camera\(s\) \['2'\] are not in the ground truth"):
        evaluate_mtmc(gt, other_camera)


def test_mtmc_cli_exits_2_on_missing_input(tmp_path):
    run = subprocess.run(
        [sys.executable, "tools/eval_mtmc.py", "--gt", str(tmp_path / "none.txt"), "--pred", str(tmp_path)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
    )
    assert run.returncode == 1 and run.stderr.startswith("error: not found:") and "Traceback" not in run.stderr


# ---------------------------------------------------------------- real data


@needs_mot15
def test_ground_truth_against_itself_scores_100(tmp_path):
    (tmp_path / "TUD-Campus.txt").symlink_to(MOT15 / "TUD-Campus" / "gt" / "gt.txt")
    result = evaluate_mot(MOT15, tmp_path, seqs=["TUD-Campus"])["TUD-Campus"]
    assert (result["HOTA"], result["MOTA"], result["IDF1"]) == (1.0, 1.0, 1.0)


@needs_mot15
def test_preloaded_reader_matches_trackeval_own_reader(tmp_path):
    """Our MOT15 adapter must give what stock TrackEval gives when it reads the files itself."""
    seq = "TUD-Stadtmitte"
    rows = read_mot_rows(MOT15 / seq / "gt" / "gt.txt")
    rng = np.random.default_rng(0)
    rows = rows[rng.random(len(rows)) > 0.15]  # misses
    rows[:, 2:4] += rng.normal(0, 6, size=(len(rows), 2))  # localisation noise
    rows[(rows[:, 0] > 90) & (rows[:, 1] % 2 == 0), 1] += 100  # identity switches
    trackers = tmp_path / "trackers"
    write_mot_results(trackers / "noisy" / "data" / f"{seq}.txt", rows)

    ours = evaluate_mot(MOT15, trackers / "noisy" / "data", seqs=[seq])[seq]

    seqmap = tmp_path / "seqmap.txt"
    seqmap.write_text(f"name\n{seq}\n")
    dataset = trackeval.datasets.MotChallenge2DBox({
        "GT_FOLDER": str(MOT15), "TRACKERS_FOLDER": str(trackers), "SEQMAP_FILE": str(seqmap),
        "SKIP_SPLIT_FOL": True, "BENCHMARK": "MOT15", "PRINT_CONFIG": False,
    })
    metrics = [trackeval.metrics.HOTA(), trackeval.metrics.CLEAR(), trackeval.metrics.Identity()]
    evaluator = trackeval.Evaluator({
        "LOG_ON_ERROR": None, "PRINT_RESULTS": False, "PRINT_CONFIG": False, "TIME_PROGRESS": False,
        "OUTPUT_SUMMARY": False, "OUTPUT_DETAILED": False, "PLOT_CURVES": False,
    })
    with contextlib.redirect_stdout(io.StringIO()):
        stock = evaluator.evaluate([dataset], metrics)[0]["MotChallenge2DBox"]["noisy"][seq]["pedestrian"]
    assert 0.3 < ours["MOTA"] < 0.95 and ours["IDSW"] > 0  # the perturbation is neither trivial nor total
    assert ours["MOTA"] == pytest.approx(stock["CLEAR"]["MOTA"])
    assert ours["IDF1"] == pytest.approx(stock["Identity"]["IDF1"])
    assert ours["HOTA"] == pytest.approx(float(np.mean(stock["HOTA"]["HOTA"])))
    assert (ours["IDSW"], ours["FP"], ours["FN"]) == (stock["CLEAR"]["IDSW"], stock["CLEAR"]["CLR_FP"],
                                                      stock["CLEAR"]["CLR_FN"])
    assert set(ours) == set(MOT_METRICS)
