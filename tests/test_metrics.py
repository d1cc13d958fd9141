import math

import numpy as np

from lib.metrics import evaluate_histogram, histogram, hungarian, matched_confusion, scores


def test_histogram_counts_and_ignores_255():
    gt = np.array([[0, 0, 1, 255]])
    pred = np.array([[1, 1, 0, 0]])
    h = histogram(gt, pred, 2, 2)
    assert h.tolist() == [[0, 2], [1, 0]]


def test_hungarian_and_scores_on_hand_made_histogram():
    # rows: classes A, B, C; columns: clusters 0, 1, 2
    hist = np.array([[2, 8, 0],
                     [6, 1, 1],
                     [0, 2, 4]])
    mapping = hungarian(hist)
    assert mapping.tolist() == [1, 0, 2]  # cluster 0 -> B, 1 -> A, 2 -> C
    conf = matched_confusion(hist, mapping)
    assert conf[:, :3].tolist() == [[8, 2, 0], [1, 6, 1], [2, 0, 4]]
    acc, iou, miou = scores(conf)
    assert math.isclose(acc, 18 / 24)
    # IoU_A = 8 / (10 + 11 - 8), IoU_B = 6 / (8 + 8 - 6), IoU_C = 4 / (6 + 5 - 4)
    expected = [8 / 13, 6 / 10, 4 / 7]
    assert np.allclose(iou, expected)
    assert math.isclose(miou, sum(expected) / 3)


def test_partition_ignores_other_classes_pixels():
    hist = np.array([[2, 8, 0], [6, 1, 1], [0, 2, 4]])
    conf = matched_confusion(hist, hungarian(hist))
    acc, iou, miou = scores(conf, [0, 2])  # A and C only; B's pixels are ignored
    assert math.isclose(acc, 12 / 16)
    # IoU_A = 8 / (10 + (8 + 2) - 8); IoU_C = 4 / (6 + (0 + 4) - 4)
    assert np.allclose(iou, [8 / 12, 4 / 6])


def test_unmatched_clusters_count_as_errors_and_nan_classes_are_skipped():
    # 2 classes, 3 clusters: cluster 2 stays unmatched
    hist = np.array([[5, 0, 5], [0, 10, 0]])
    out, mapping, conf = evaluate_histogram(hist, ["a", "b"], things=[0], stuff=[1])
    assert mapping.tolist() == [0, 1, -1]
    assert math.isclose(out["acc"], 100 * 15 / 20)
    assert math.isclose(out["iou_a"], 100 * 5 / 10)
    assert math.isclose(out["things_acc"], 50.0) and math.isclose(out["stuff_acc"], 100.0)
    # a class absent from the ground truth and never predicted does not count in mIoU
    hist = np.array([[4, 0, 0], [0, 4, 0], [0, 0, 0]])
    out, _, _ = evaluate_histogram(hist, ["a", "b", "c"])
    assert out["miou"] == 100.0 and out["iou_c"] is None
