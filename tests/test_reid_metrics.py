"""CMC / mAP under the MARS protocol against a case computed by hand."""

import numpy as np
import pytest
import torch

from reid.metrics import average_precision, cosine_distance, evaluate_retrieval

# Gallery: g0 pid 1 cam 1 | g1 pid 2 cam 2 | g2 pid 1 cam 2 | g3 pid -1 cam 2 | g4 pid 1 cam 3
GALLERY_PIDS = np.array([1, 2, 1, -1, 1])
GALLERY_CAMS = np.array([1, 2, 2, 2, 3])
QUERY_PIDS = np.array([1, 2, 3])
QUERY_CAMS = np.array([1, 1, 1])
DISTANCES = np.array([
    [0.1, 0.2, 0.3, 0.05, 0.6],
    [0.5, 0.4, 0.1, 0.9, 0.2],
    [0.3, 0.2, 0.1, 0.4, 0.5],
])


def test_cmc_and_map_match_the_hand_computed_case():
    # q0 (pid 1, cam 1): ranked g3 g0 g1 g2 g4. g3 is a distractor (-1) and g0 the same pid in the
    #   same camera: both ignored. Remaining: g1 (no), g2 (yes), g4 (yes) -> first hit at rank 2,
    #   AP = (1/2 + 2/3) / 2 = 7/12.
    # q1 (pid 2, cam 1): ranked g2 g4 g1 g0 g3 -> g2 no, g4 no, g1 yes (pid 2, cam 2), g0 no
    #   (g3 ignored) -> first hit at rank 3, AP = 1/3.
    # q2 (pid 3): no true match in the gallery -> left out.
    # CMC: rank 1 = 0/2, rank 2 = 1/2, rank 3.. = 2/2. mAP = (7/12 + 4/12) / 2 = 11/24.
    result = evaluate_retrieval(DISTANCES, QUERY_PIDS, GALLERY_PIDS, QUERY_CAMS, GALLERY_CAMS, max_rank=5)
    np.testing.assert_allclose(result.cmc, [0.0, 0.5, 1.0, 1.0, 1.0])
    assert result.mAP == pytest.approx(11 / 24)
    assert (result.num_queries, result.num_skipped) == (2, 1)
    assert result.rank(1) == 0.0 and result.rank(20) == 1.0  # ranks beyond the gallery read the last value


def test_same_camera_match_alone_does_not_count():
    # The only pid-1 entry shares the query's camera: nothing valid remains for that query.
    with pytest.raises(ValueError, match="no query has a true match"):
        evaluate_retrieval(np.array([[0.1, 0.2]]), np.array([1]), np.array([1, 2]), np.array([1]), np.array([1, 2]))


def test_average_precision_of_perfect_and_last_place_rankings():
    assert average_precision(np.array([True, True, False])) == 1.0
    assert average_precision(np.array([False, False, False, True])) == pytest.approx(0.25)


def test_cosine_distance_ignores_scale():
    q = torch.tensor([[1.0, 0.0], [0.0, 3.0]])
    g = torch.tensor([[2.0, 0.0], [0.0, -1.0]])
    np.testing.assert_allclose(cosine_distance(q, g), [[0.0, 1.0], [1.0, 2.0]], atol=1e-6)


def test_distance_matrix_shape_is_checked():
    with pytest.raises(ValueError, match="does not fit"):
        evaluate_retrieval(np.zeros((2, 3)), QUERY_PIDS, GALLERY_PIDS, QUERY_CAMS, GALLERY_CAMS)
