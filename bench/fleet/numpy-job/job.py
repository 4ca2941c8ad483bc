"""A deterministic numpy job: solves a linear system, finds eigenvalues and two FFT peaks.

Floats are printed rounded to at most six decimals and the random generator has a fixed seed,
so the output is the same on every run of the same image.
"""

import numpy as np


def main() -> None:
    matrix = np.array([[4.0, 1.0, 2.0], [1.0, 3.0, 0.0], [2.0, 0.0, 5.0]])
    rhs = np.array([1.0, 2.0, 3.0])
    solution = np.linalg.solve(matrix, rhs)  # LAPACK gesv
    eigenvalues = np.linalg.eigvalsh(matrix)  # LAPACK syevd

    samples = 256
    t = np.arange(samples) / samples
    signal = np.sin(2 * np.pi * 12 * t) + 0.5 * np.sin(2 * np.pi * 40 * t)
    spectrum = np.abs(np.fft.rfft(signal))
    peaks = sorted(int(i) for i in np.argsort(spectrum)[-2:])

    rng = np.random.default_rng(seed=20231114)
    readings = rng.normal(loc=20.0, scale=2.0, size=1000)

    print(f"numpy {np.__version__}")
    print("solution", " ".join(f"{x:.6f}" for x in solution))
    print("eigenvalues", " ".join(f"{x:.6f}" for x in eigenvalues))
    print("fft peaks", *peaks)
    print(f"readings mean {readings.mean():.4f} std {readings.std():.4f}")
    print(f"matmul trace {np.trace(matrix @ matrix.T):.1f}")


if __name__ == "__main__":
    main()
