"""Samples out (png-folder, npz) and images in (difftk.evaluation.sample_files), and the evaluation
context of a set of images: round trips exact to the byte, every bad file one line, outputs that
replace only what difftk wrote."""

import os
import pickle
import zipfile

import numpy as np
import pytest
import torch
from difftk.data.arrays import ArrayDataset, to_uint8_images
from difftk.errors import DifftkError, OutputError
from difftk.evaluation import compare, sample_files
from difftk.evaluation.compare import measure
from difftk.evaluation.context import EvalContext, NeedsModelError
from difftk.evaluation.sample_files import (
    check_samples_output,
    format_of,
    read_samples,
    write_npz,
    write_png_folder,
)
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from PIL import Image


def images(n=5, c=1, h=6, w=7, seed=0):
    return torch.rand((n, c, h, w), generator=torch.Generator().manual_seed(seed)) * 2.2 - 1.1  # a little out of range


# --- round trips -------------------------------------------------------------------------------------


@settings(max_examples=12, deadline=None)
@given(n=st.integers(1, 4), c=st.sampled_from([1, 3]), h=st.integers(1, 5), w=st.integers(1, 5),
       labelled=st.booleans(), seed=st.integers(0, 2**16))
def test_folder_and_npz_give_back_the_quantised_images_and_labels(tmp_path_factory, n, c, h, w, labelled, seed):
    """read(write(x)) is exactly to_uint8_images(x), the quantisation every grid of difftk uses, with the labels."""
    tmp = tmp_path_factory.mktemp("round")
    x = images(n, c, h, w, seed)
    labels = torch.randint(0, 10, (n,), generator=torch.Generator().manual_seed(seed)) if labelled else None
    want = to_uint8_images(x)
    for back in (read_samples(write_png_folder(x, tmp / "dir", labels)), read_samples(write_npz(x, tmp / "s.npz", labels))):
        assert back.data.dtype == torch.uint8 and torch.equal(back.data, want)
        if labelled:
            assert torch.equal(back.labels, labels) and back.num_classes == int(labels.max()) + 1
        else:
            assert back.labels is None and back.num_classes == 0


def test_the_folder_holds_only_zero_padded_pngs_grey_as_l_mode(tmp_path):
    x = images(12, c=1)
    write_png_folder(x, tmp_path / "grey", torch.arange(12) % 3)
    names = sorted(os.listdir(tmp_path / "grey"))
    assert names == [f"{i:06d}.png" for i in range(12)]
    with Image.open(tmp_path / "grey" / "000011.png") as image:
        assert image.mode == "L" and image.size == (7, 6) and image.info["label"] == "2"
    write_png_folder(images(2, c=3), tmp_path / "rgb")
    with Image.open(tmp_path / "rgb" / "000000.png") as image:
        assert image.mode == "RGB" and "label" not in image.info
    assert sorted(os.listdir(tmp_path)) == ["grey", "rgb"]  # no temporary sibling left behind


def test_the_npz_is_the_adm_layout_readable_without_pickle(tmp_path):
    x = images(4, c=3, h=5, w=6)
    write_npz(x, tmp_path / "s.npz", torch.tensor([3, 1, 4, 1]))
    with np.load(tmp_path / "s.npz", allow_pickle=False) as archive:
        assert sorted(archive.files) == ["arr_0", "labels"]
        assert archive["arr_0"].dtype == np.uint8 and archive["arr_0"].shape == (4, 5, 6, 3)
        assert np.array_equal(archive["arr_0"], to_uint8_images(x).permute(0, 2, 3, 1).numpy())
        assert archive["labels"].tolist() == [3, 1, 4, 1]
    write_npz(images(2, c=1), tmp_path / "g.npz")
    with np.load(tmp_path / "g.npz") as archive:
        assert archive["arr_0"].shape == (2, 6, 7, 1) and archive.files == ["arr_0"]


def test_other_generators_files_are_read(tmp_path):
    """What np.savez and Pillow write elsewhere: ADM's arr_0/arr_1 npz, a folder of JPEGs and grey PNGs
    mixed with RGB ones (read as RGB, as clean-fid does), dotfiles skipped."""
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (3, 4, 4, 3), dtype=np.uint8)
    np.savez(tmp_path / "adm.npz", arr, np.array([7, 0, 2]))
    back = read_samples(tmp_path / "adm.npz")
    assert torch.equal(back.data, torch.from_numpy(arr).permute(0, 3, 1, 2)) and back.labels.tolist() == [7, 0, 2]
    folder = tmp_path / "mixed"
    folder.mkdir()
    Image.fromarray(arr[0]).save(folder / "a.png")
    Image.fromarray(arr[1, ..., 0], "L").save(folder / "b.png")
    Image.fromarray(arr[2]).save(folder / "c.jpg", quality=95)
    (folder / ".DS_Store").write_bytes(b"\0")
    back = read_samples(folder)
    assert back.data.shape == (3, 3, 4, 4) and torch.equal(back.data[0], torch.from_numpy(arr[0]).permute(2, 0, 1))
    assert torch.equal(back.data[1], torch.from_numpy(arr[1, ..., 0]).expand(3, 4, 4)) and back.labels is None


# --- every bad file is one line --------------------------------------------------------------------------


def bad_inputs(tmp):
    """(what to read, the words its error must say)."""
    ok = np.zeros((2, 4, 4, 3), dtype=np.uint8)
    cases = []

    def folder(name, files):
        d = tmp / name
        d.mkdir()
        for file, content in files.items():
            if isinstance(content, Image.Image):
                content.save(d / file)
            elif content == "dir":
                (d / file).mkdir()
            else:
                (d / file).write_bytes(content)
        return d

    grey = Image.new("L", (4, 4))
    cases.append((folder("notes", {"0.png": grey, "notes.txt": b"hello"}), "is not an image"))
    cases.append((folder("sizes", {"0.png": grey, "1.png": Image.new("L", (5, 4))}), "5×4 but 0.png is 4×4"))
    cases.append((folder("zero", {"0.png": grey, "1.png": b""}), "is empty (0 bytes)"))
    cases.append((folder("broken", {"0.png": b"\x89PNG\r\n\x1a\n garbage"}), "is not a readable image"))
    cases.append((folder("empty", {}), "holds no images"))
    cases.append((folder("nested", {"0.png": grey, "sub": "dir"}), "holds the folder sub"))
    cases.append((folder("deep", {"0.png": Image.new("I;16", (4, 4))}), "save 8-bit grey or RGB"))
    np.savez(tmp / "float.npz", ok.astype(np.float32))
    cases.append((tmp / "float.npz", "arr_0 is float32 of shape [2, 4, 4, 3]; images must be uint8"))
    np.savez(tmp / "rank3.npz", ok[0])
    cases.append((tmp / "rank3.npz", "images must be uint8 [N, H, W, C]"))
    np.savez(tmp / "rgba.npz", np.zeros((2, 4, 4, 4), dtype=np.uint8))
    cases.append((tmp / "rgba.npz", "C = 1 (grey) or 3 (RGB)"))
    np.savez(tmp / "pickle.npz", np.array([{"a": 1}, None], dtype=object))
    cases.append((tmp / "pickle.npz", "pickled object array, which difftk never loads"))
    np.savez(tmp / "labels.npz", arr_0=ok, labels=np.array([0.5, 1.0]))
    cases.append((tmp / "labels.npz", "labels must be 2 class indices"))
    np.savez(tmp / "named.npz", images=ok)
    cases.append((tmp / "named.npz", "has no array arr_0 (it has images)"))
    np.save(tmp / "plain.npy", ok)
    cases.append((tmp / "plain.npy", "a single .npy array, not an .npz"))
    (tmp / "text.npz").write_text("not a zip")
    cases.append((tmp / "text.npz", "is not"))
    (tmp / "cut.npz").write_bytes((tmp / "float.npz").read_bytes()[:100])
    cases.append((tmp / "cut.npz", "is not"))
    (tmp / "raw.pkl").write_bytes(pickle.dumps({"arr_0": ok}))
    cases.append((tmp / "raw.pkl", "holds pickled data, which difftk never loads"))
    cases.append((tmp / "missing", "no such folder or file"))
    grey.save(tmp / "one.png")
    cases.append((tmp / "one.png", "is one image"))
    return cases


def test_every_bad_file_is_one_line(tmp_path):
    for path, words in bad_inputs(tmp_path):
        with pytest.raises(DifftkError) as err:
            read_samples(path)
        message = str(err.value)
        assert words in message and "\n" not in message, (path.name, message)


# --- outputs: checked first, written whole, never replacing what difftk did not write ----------------


def test_format_follows_the_name_unless_given_and_a_contradiction_is_one_line(tmp_path):
    assert format_of("a.npz", None) == "npz" and format_of("a.png", None) == "png" and format_of("d", "png-folder") == "png-folder"
    assert format_of("d/", None) == format_of(tmp_path, None) == "png-folder" and format_of(tmp_path / "g", None) == "png"
    for path, fmt, words in [("a.png", "npz", "named NAME.npz"), ("a.npz", "png", "names an npz"),
                             ("a.png", "png-folder", "writes to a folder name")]:
        with pytest.raises(OutputError, match=words):
            format_of(path, fmt)


def test_only_what_difftk_wrote_as_samples_is_replaced(tmp_path):
    np.savez(tmp_path / "theirs.npz", np.zeros((1, 2, 2, 1), np.uint8))  # a valid npz, but not ours
    with pytest.raises(OutputError, match="not an npz of samples difftk wrote"):
        write_npz(images(1), tmp_path / "theirs.npz")
    write_npz(images(1), tmp_path / "ours.npz")
    write_npz(images(3), tmp_path / "ours.npz")  # ours: replaced
    assert read_samples(tmp_path / "ours.npz").data.shape[0] == 3
    (tmp_path / "photos").mkdir()
    Image.new("L", (2, 2)).save(tmp_path / "photos" / "000000.png")  # named like ours, but not written by difftk
    with pytest.raises(OutputError, match="holds 000000.png, which difftk did not write"):
        check_samples_output(tmp_path / "photos", "png-folder")
    with pytest.raises(OutputError, match="is a file"):
        check_samples_output(tmp_path / "ours.npz", "png-folder")
    (tmp_path / "empty").mkdir()
    write_png_folder(images(5), tmp_path / "empty")  # an empty folder loses nothing
    write_png_folder(images(2), tmp_path / "empty")  # ours: replaced whole, the old 3 extra PNGs gone
    assert sorted(os.listdir(tmp_path / "empty")) == ["000000.png", "000001.png"]


def test_a_failed_folder_write_leaves_the_old_folder_and_no_temporary(tmp_path, monkeypatch):
    write_png_folder(images(3), tmp_path / "out")
    before = sorted(os.listdir(tmp_path))
    calls = []

    def full_disk(self, fp, *args, **kwargs):
        calls.append(fp)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return original(self, fp, *args, **kwargs)

    original = Image.Image.save
    monkeypatch.setattr(Image.Image, "save", full_disk)
    with pytest.raises(OutputError, match="cannot write .*No space left on device"):
        write_png_folder(images(4), tmp_path / "out")
    assert sorted(os.listdir(tmp_path)) == before and len(os.listdir(tmp_path / "out")) == 3


def test_every_written_file_carries_the_mark(tmp_path):
    write_npz(images(1), tmp_path / "s.npz")
    with zipfile.ZipFile(tmp_path / "s.npz") as archive:
        assert archive.comment == sample_files.MARK.encode()
    write_png_folder(images(1), tmp_path / "d")
    with Image.open(tmp_path / "d" / "000000.png") as image:
        assert image.info["Software"] == sample_files.MARK


# --- the evaluation context of a set of images --------------------------------------------------------


@pytest.fixture
def labelled():
    data = torch.arange(6 * 4, dtype=torch.uint8).reshape(6, 1, 2, 2) * 10
    return ArrayDataset(data, torch.tensor([0, 1, 2, 0, 1, 2]), 3, "six.npz")


def test_a_context_of_images_returns_them_in_order_or_by_label(labelled):
    context = EvalContext.from_images(labelled, None)
    assert context.shape == (1, 2, 2) and context.num_classes == 3 and context.device.type == "cpu"
    scaled = labelled.data.float() / 127.5 - 1
    assert torch.equal(context.samples(4), scaled[:4]) and torch.equal(context.samples(2, offset=1), scaled[2:4])
    assert context.balanced_labels(4).tolist() == [0, 1, 2, 0]
    assert torch.equal(context.samples(3, torch.tensor([2, 2, 0])), scaled[[2, 5, 0]])  # each class's images in order
    with pytest.raises(DifftkError, match="six.npz holds 6 images, fewer than the 7 asked for: use n=6 or fewer"):
        context.samples(7)
    with pytest.raises(DifftkError, match="holds 2 images of class 1, fewer than the 3 asked for"):
        context.samples(3, torch.tensor([1, 1, 1]))


def test_without_labels_a_set_is_unconditional_and_a_metric_of_models_is_one_line(labelled, monkeypatch):
    bare = EvalContext.from_images(ArrayDataset(labelled.data, name="bare"), None)
    assert bare.num_classes == 0 and bare.balanced_labels(3) is None
    with pytest.raises(NeedsModelError, match="bare holds images only"):
        _ = bare.denoiser
    with pytest.raises(DifftkError, match="compares bare with held-out data, but none was given"):
        bare.held_out("fid")

    class NeedsTheNetwork:
        def evaluate(self, context):
            return context.model.denoiser

    monkeypatch.setattr(compare, "create_component", lambda kind, name, options: NeedsTheNetwork())
    with pytest.raises(DifftkError, match="^metric 'bpd-ode' needs the model that made the images"):
        measure("bpd-ode", {}, bare)


@settings(max_examples=30, deadline=None)
@given(labels=st.lists(st.integers(0, 3), min_size=1, max_size=12), data=st.data())
def test_images_asked_for_by_label_are_distinct_images_of_those_labels_in_order(labels, data):
    """For any labelled set and any request it can meet, given(n, cond, offset) returns distinct images
    whose labels are cond, each class's the offset-th block of that class's images in their order."""
    y = torch.tensor(labels)
    images = ArrayDataset(torch.arange(len(y), dtype=torch.uint8).view(-1, 1, 1, 1), y, 4, "set")
    context = EvalContext.from_images(images, None)
    have = {c: (y == c).nonzero().flatten().tolist() for c in range(4)}
    offset = data.draw(st.integers(0, 2))
    pool = [c for c in range(4) for _ in have[c][offset:]]  # what is left of each class after offset blocks
    cond = data.draw(st.lists(st.sampled_from(pool), max_size=len(pool)) if pool else st.just([]))
    counts = {c: cond.count(c) for c in range(4)}
    assume(cond and all((offset + 1) * counts[c] <= len(have[c]) for c in range(4)))
    index = (context.given(len(cond), torch.tensor(cond), offset) + 1).mul(127.5).round().long().flatten()
    assert y[index].tolist() == cond and len(set(index.tolist())) == len(cond)
    for c in range(4):
        assert [i for i, k in zip(index.tolist(), cond, strict=True) if k == c] == have[c][offset * counts[c]:(offset + 1) * counts[c]]


@pytest.mark.parametrize("key", ["arr_0", "labels"])
def test_an_npz_member_that_claims_more_than_it_holds_is_refused_before_allocating(tmp_path, key):
    path = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path, "w") as archive:
        if key == "labels":
            with archive.open("arr_0.npy", "w") as fh:
                np.lib.format.write_array(fh, np.zeros((2, 4, 4, 1), np.uint8))
        with archive.open(f"{key}.npy", "w") as fh:  # a 300-byte file whose header claims 314 GB
            np.lib.format.write_array_header_1_0(fh, {"descr": "|u1", "fortran_order": False,
                                                      "shape": (100_000, 1024, 1024, 3)})
            fh.write(b"\0" * 100)
    with pytest.raises(DifftkError, match=f"{key} claims shape \\[100000, 1024, 1024, 3\\] \\(314,572,800,000 bytes\\) "
                                          "but holds 100: the file is damaged"):
        read_samples(path)
