"""Pictures a person can look at: observations as colour images, PNG and GIF files."""

from typing import Sequence

import numpy as np
from PIL import Image

# Observation pixel value -> colour (see maze.make_sprites): floor, wall, agent, key.
PALETTE = ((-1.0, (240, 240, 240)), (1.0, (40, 40, 60)), (0.6, (30, 110, 220)),
           (0.8, (120, 190, 255)), (0.2, (230, 170, 20)), (0.4, (250, 220, 80)))


def render_cells(cells: np.ndarray, sprites: np.ndarray) -> np.ndarray:
  """Draws cell codes [..., n, n] as observations float32 [..., n * p, n * p, 1]."""
  pixels = sprites[cells]  # [..., n, n, p, p]
  *batch, n, _, p, _ = pixels.shape
  pixels = np.swapaxes(pixels, -3, -2)  # [..., n, p, n, p]
  return pixels.reshape(*batch, n * p, n * p, 1)


def observation_to_rgb(observation: np.ndarray, scale: int = 4) -> np.ndarray:
  """float32 [h, w, 1] or [h, w] -> uint8 RGB [h * scale, w * scale, 3]."""
  gray = np.asarray(observation).reshape(observation.shape[0], observation.shape[1])
  rgb = np.zeros(gray.shape + (3,), np.uint8)
  for value, colour in PALETTE:
    rgb[np.isclose(gray, value)] = colour
  return np.kron(rgb, np.ones((scale, scale, 1), np.uint8))


def tile(images: Sequence[np.ndarray], gap: int = 4) -> np.ndarray:
  """Places equally sized RGB images side by side with a white gap."""
  height = images[0].shape[0]
  spacer = np.full((height, gap, 3), 255, np.uint8)
  parts = []
  for image in images:
    parts += [image, spacer]
  return np.concatenate(parts[:-1], axis=1)


def save_png(path: str, image: np.ndarray) -> None:
  Image.fromarray(image).save(path)


def save_dataset_preview(path: str, arrays, sprites: np.ndarray, num_mazes: int = 4) -> None:
  """Writes the first observation of the first `num_mazes` episodes of a dataset."""
  firsts = np.flatnonzero(arrays['step_type'] == 0)[:num_mazes]
  images = [observation_to_rgb(render_cells(arrays['cells'][i], sprites))
            for i in firsts]
  save_png(path, tile(images))


def path_image(first_observation: np.ndarray, path, cell_pixels: int = 6,
               scale: int = 4) -> np.ndarray:
  """The maze as it started, with the cells the agent visited tinted red."""
  image = observation_to_rgb(first_observation, scale).astype(np.float32)
  side = cell_pixels * scale
  for row, col in path:
    cell = image[row * side:(row + 1) * side, col * side:(col + 1) * side]
    cell[:] = 0.5 * cell + 0.5 * np.array([220, 40, 40])
  return image.astype(np.uint8)


def save_gif(path: str, frames: Sequence[np.ndarray], milliseconds: int = 250) -> None:
  images = [Image.fromarray(frame) for frame in frames]
  images[0].save(path, save_all=True, append_images=images[1:], duration=milliseconds, loop=0)
