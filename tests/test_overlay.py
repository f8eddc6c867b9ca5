"""The overlay picture (serving/overlay.py): end plates of the curves, the CAM inside the
spine only, lines clipped to the image."""

import numpy as np

from seg4reg_tf.serving import overlay


def overlay_scene():
    """A drawn spine on a 600×300 gray radiograph, an empty mask and CAM at 64×32, and the
    letterbox between them: (landmarks, pixels, mask, cam, letterbox)."""
    from seg4reg_tf.data import synthetic

    rng = synthetic.image_rng(0, "overlay-test", 0)
    spine = synthetic.draw_spine(rng, 600, 300, synthetic.SyntheticConfig())
    pixels = np.full((600, 300), 0.5, np.float32)
    mask, cam = np.zeros((64, 32), np.float32), np.zeros((2, 1), np.float32)
    return spine.landmarks, pixels, mask, cam, (64 / 600, 0.0, (32 - 300 * 64 / 600) / 2)


def amber_pixels(picture):  # anti-aliased lines blend into the background
    blue, green, red = (picture[..., channel].astype(int) for channel in range(3))
    return int(((blue < 80) & (green > 150) & (red > 180)).sum())


def test_overlay_draws_the_end_plates_of_the_largest_curve():
    landmarks, pixels, mask, cam, letterbox = overlay_scene()
    assert overlay.ENDPLATE_COLOUR == (0, 215, 255)  # BGR amber

    plain = overlay.render(pixels, mask, cam, letterbox, ["x"])
    marked = overlay.render(pixels, mask, cam, letterbox, ["x"], landmarks=landmarks, curves=[((3, 10), "MT 30.0 deg")])
    assert amber_pixels(plain) == 0 and amber_pixels(marked) > 200  # two lines across a 300-pixel width
    # the upper line passes through the upper end plate's middle (displayed at 600 rows: scale 1)
    top = (landmarks[12] + landmarks[13]) / 2
    x, y = np.round(top).astype(int)
    band = marked[-600:][y - 2 : y + 3, x - 2 : x + 3]
    assert amber_pixels(band) > 0


def test_overlay_draws_each_curve_once():
    landmarks, pixels, mask, cam, letterbox = overlay_scene()
    largest = ((3, 10), "MT 30.0 deg")
    alone = amber_pixels(overlay.render(pixels, mask, cam, letterbox, ["x"], landmarks=landmarks, curves=[largest]))
    repeated = amber_pixels(overlay.render(pixels, mask, cam, letterbox, ["x"], landmarks=landmarks, curves=[largest, ((3, 10), "MT 30.0 deg"), ((-1, -1), "")]))
    more = amber_pixels(overlay.render(pixels, mask, cam, letterbox, ["x"], landmarks=landmarks, curves=[largest, ((0, 3), "PT 12.0 deg"), ((10, 16), "TL/L 15.0 deg")]))
    assert repeated == alone and more > alone + 200
    # the lower end plate of L5 (the third curve's lower end) is marked
    bottom = (landmarks[66] + landmarks[67]) / 2
    x, y = np.round(bottom).astype(int)
    picture = overlay.render(pixels, mask, cam, letterbox, ["x"], landmarks=landmarks, curves=[largest, ((10, 16), "TL/L 15.0 deg")])
    assert amber_pixels(picture[-600:][y - 2 : y + 3, x - 2 : x + 3]) > 0
    assert amber_pixels(overlay.render(pixels, mask, cam, letterbox, ["x"], curves=[largest])) == 0  # no landmarks, nothing drawn


def test_the_cam_is_off_by_default_and_stays_inside_the_spine():
    landmarks, pixels, _, _, letterbox = overlay_scene()
    mask = np.zeros((64, 32), np.float32)
    mask[10:50, 12:20] = 1.0
    cam = np.linspace(0, 1, 2 * 1, dtype=np.float32).reshape(2, 1)
    plain = overlay.render(pixels, mask, None, letterbox, ["x"])
    tinted = overlay.render(pixels, mask, cam, letterbox, ["x"])
    grey = plain[-600:].astype(int)
    assert (np.ptp(grey, axis=2) <= 1).sum() > 0.9 * grey[..., 0].size  # no heat map: grey, but the green outline
    changed = np.any(tinted[-600:] != plain[-600:], axis=2)
    spine = overlay.to_display(mask, letterbox, 1.0, (300, 600)) > 0.5
    assert changed.any() and not (changed & ~spine).any()  # the heat map only inside the outline


def test_end_plate_lines_end_at_the_image_edge():
    for point, direction in (((5.0, 50.0), (-1.0, 0.0)), ((290.0, 10.0), (0.6, -0.8)), ((150.0, 300.0), (0.0, 1.0))):
        reach = overlay.inside_reach(np.array(point), np.array(direction), (600, 300, 3), 1000.0)
        end = np.array(point) + reach * np.array(direction)
        assert -1e-6 <= end[0] <= 299 + 1e-6 and -1e-6 <= end[1] <= 599 + 1e-6
        assert np.isclose(end[0], 0) or np.isclose(end[0], 299) or np.isclose(end[1], 0) or np.isclose(end[1], 599)
    assert overlay.inside_reach(np.array([150.0, 300.0]), np.array([1.0, 0.0]), (600, 300, 3), 20.0) == 20.0
