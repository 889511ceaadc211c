"""Enrolment and search by photo, without Triton (the ``people`` model's logic).

A photo becomes one look: the person box (given, or the largest person the detector finds in it), cropped
from the decoded photo and embedded with the same ReID model the pipeline runs. Enrolment stores a name
with the looks of one or more photos; photos that are not of one person (two looks less alike than
``min_similarity``, the threshold at which the pipeline itself joins a track to an identity) are refused,
and so are photos that add to an enrolled name but do not look like them. Search finds the sightings most
like a photo's look. Every refusal is an :class:`InvalidInputError` saying which photo and why; nothing is
stored unless the whole request is accepted.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from pipeline_models.errors import InvalidInputError, Reason
from pipeline_models.reid.crops import crop_batch, valid_boxes
from pipeline_models.reid.embedder import Embedder
from pipeline_models.reid.gallery import Person, Sighting, clean_name
from pipeline_models.reid.store import SqlStore

#: ``detect(photo) -> (boxes (n, 4) xyxy, scores (n,))``, the server's person detector.
Detect = Callable[[bytes], tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]]
#: ``decode(photo) -> (H, W, 3) uint8 BGR`` with the server's image checks.
Decode = Callable[[bytes], npt.NDArray[np.uint8]]
MAX_PHOTOS = 16


@dataclass(frozen=True)
class Look:
    """One photo's person: the box used (xyxy photo pixels) and the unit embedding."""

    box: npt.NDArray[np.float32]
    embedding: npt.NDArray[np.float32]


@dataclass(frozen=True)
class Enrolled:
    """An enrolment's result: the person and the box used in each photo."""

    person: Person
    boxes: npt.NDArray[np.float32]


def largest_box(boxes: npt.NDArray) -> int | None:
    """Index of the largest-area box (None for none)."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    if not len(b):
        return None
    return int(np.argmax((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])))


def least_similarity(embeddings: npt.NDArray) -> float:
    """The smallest cosine similarity between two of the unit rows (1 for fewer than two)."""
    e = np.asarray(embeddings, np.float64)
    if len(e) < 2:
        return 1.0
    sim = e @ e.T
    return float(sim[np.triu_indices(len(e), 1)].min())


class PeopleService:
    """Enrol, list, delete and search people in one store (see the module docstring)."""

    def __init__(
        self, store: SqlStore, embedder: Embedder, detect: Detect, decode: Decode, min_similarity: float
    ) -> None:
        self.store, self.embedder, self.detect, self.decode = store, embedder, detect, decode
        self.min_similarity = float(min_similarity)

    def look(self, photo: bytes, box: npt.ArrayLike | None, what: str) -> Look:
        """The person of one photo (``box`` None or NaN: the largest person the detector finds)."""
        try:
            image = self.decode(photo)
        except InvalidInputError as exc:
            raise InvalidInputError(f"{what}: {exc}", exc.reason) from exc
        given = None if box is None else np.asarray(box, np.float32).reshape(-1)
        if given is None or np.isnan(given).all():
            boxes, _ = self.detect(photo)
            i = largest_box(boxes)
            if i is None:
                raise InvalidInputError(f"{what}: no person found in the photo (give a BOX)", Reason.NO_PERSON)
            given = np.asarray(boxes, np.float32).reshape(-1, 4)[i]
        if given.shape != (4,) or not valid_boxes(given[np.newaxis], image.shape[:2], min_side=2.0)[0]:
            raise InvalidInputError(
                f"{what}: BOX {given.tolist()} is not an x1, y1, x2, y2 box inside the {image.shape[1]}x"
                f"{image.shape[0]} photo"
            )
        crops = crop_batch(image, given[np.newaxis], self.embedder.input_hw, bgr=True)
        return Look(given, self.embedder.embed(crops)[0])

    def looks(self, photos: Sequence[bytes], boxes: npt.ArrayLike | None) -> list[Look]:
        """One look per photo (``boxes`` None or ``(k, 4)``, a NaN row: detect)."""
        if not 1 <= len(photos) <= MAX_PHOTOS:
            raise InvalidInputError(f"give 1 to {MAX_PHOTOS} photos, got {len(photos)}")
        given = None if boxes is None else np.asarray(boxes, np.float32).reshape(-1, 4)
        if given is not None and len(given) != len(photos):
            raise InvalidInputError(f"{len(photos)} photos need {len(photos)} BOXES rows, got {len(given)}")
        return [
            self.look(photo, None if given is None else given[i], f"photo {i + 1}")
            for i, photo in enumerate(photos)
        ]

    def find(self, name: str) -> Person:
        clean = clean_name(name)
        for person in self.store.people():
            if person.name == clean:
                return person
        raise InvalidInputError(f"nobody is enrolled as {clean!r}")

    def enrol(self, name: str, photos: Sequence[bytes], boxes: npt.ArrayLike | None, now: float) -> Enrolled:
        """Enrol ``name`` from photos, or add them to an enrolled ``name``.

        Raises:
            InvalidInputError: a bad name, photo or box, no person found, or photos (with the person's
                enrolled looks) that are not of one person.
        """
        clean = clean_name(name)
        looks = self.looks(photos, boxes)
        vectors = np.stack([look.embedding for look in looks])
        known = {p.name: p for p in self.store.people()}.get(clean)
        enrolled = self._enrolled_vectors(clean) if known else np.empty((0, vectors.shape[1]), np.float32)
        least = least_similarity(np.concatenate([enrolled, vectors]))
        if least < self.min_similarity:
            whose = f"{clean!r}'s enrolled photos and these" if known else "these photos"
            raise InvalidInputError(
                f"{whose} do not look like one person (least similarity {least:.2f} < {self.min_similarity}): "
                "enrol different people under different names"
            )
        if known:
            self.store.add_embeddings(known.id, vectors)
            person_id = known.id
        else:
            person_id = self.store.enrol(clean, vectors, now)
        person = next(p for p in self.store.people() if p.id == person_id)
        return Enrolled(person, np.stack([look.box for look in looks]))

    def _enrolled_vectors(self, name: str) -> npt.NDArray[np.float32]:
        names, vectors = self.store.enrolled()
        return vectors[[i for i, n in enumerate(names) if n == name]]

    def delete(self, name: str) -> Person:
        """Delete an enrolled person (their embeddings go with them; sightings stay)."""
        person = self.find(name)
        if not self.store.delete(person.id):
            raise InvalidInputError(f"nobody is enrolled as {person.name!r}")
        return person

    def people(self) -> list[Person]:
        return self.store.people()

    def search(self, photo: bytes, box: npt.ArrayLike | None, top_k: int) -> tuple[Look, list[Sighting]]:
        """The sightings most like the photo's person (similarity >= ``min_similarity``), best first."""
        if top_k < 1:
            raise InvalidInputError(f"TOP_K must be >= 1, got {top_k}")
        look = self.look(photo, box, "photo")
        found = self.store.search_sightings(look.embedding, top_k=top_k)
        return look, [s for s in found if s.similarity >= self.min_similarity]
