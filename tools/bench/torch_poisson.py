#!/usr/bin/env python3
"""PyTorch peer of `pdegen train` for poisson2d and poisson3d: the same deck, samples, network, loss and optimizer.

It reads a pdegen deck (plus `key.path=value` overrides, applied as pdegen applies them) and trains
the same problem the way a PyTorch user would write it, so that tools/bench/compare_train.py can put
the two side by side. The deck's problem.pde picks the dimension.
What is shared with pdegen, and must stay so:
  - samples: Philox4x32-10 counter-based draws as src/core/rng.hpp, the KL expansion of docs/theory.md
    as src/physics/kl_sampler.* (training sample p of step s has global index s*B + p, evaluation
    sample e 2^40 + e; in 3D the modes phi_i(x) phi_j(y) phi_k(z) by decreasing lambda_i lambda_j
    lambda_k, ties by (i + j + k, i, j)); tools/bench/dump_kl_samples prints pdegen's fields to compare;
  - network: the U-Net of src/nn/unet_plan.hpp, 2D or 3D (PyTorch's default initialisation, not pdegen's);
  - exact Dirichlet lift u = m * net + (1 - m) * g (u = 1 at x = 0, 0 at x = 1), Q1 loss as
    src/physics/q1_kernels.hpp (2D: bilinear quads, 2x2 Gauss; 3D: trilinear hexahedra, 2x2x2 Gauss):
    the energy, or with problem.loss residual ||K u - F||^2 over the free nodes (K u - F by autograd
    of the energy);
  - optimizer and learning-rate schedule of the deck;
  - evaluation: rel_l2 against the assembled Q1 system solved with scipy to the deck's tolerance
    (2D: sparse LU; 3D: conjugate gradients preconditioned by pyamg's smoothed aggregation when
    pyamg is installed, else by Jacobi).
Prints a progress line per logged step and, at the end, one JSON line (also written to --json FILE).
Run with the peer's python (build/bench-venv from tools/install_deps.sh --bench: the newest PyTorch
from PyPI, numpy, scipy, pyyaml), or any python with those:
    build/bench-venv/bin/python tools/bench/torch_poisson.py DECK [key.path=value ...] [--threads 2]
        [--steps N] [--max-train-seconds S] [--eval-only-at-end] [--json FILE] [--ref-cache DIR]
        [--loss-dtype float64] [--device cpu|cuda] [--tf32] [--no-cudnn-benchmark]
        [--channels-last] [--bf16] [--compile] [--best]
    /usr/bin/python3 tools/bench/torch_poisson.py --self-test [--device cuda]
(tools/bench/torch_poisson2d.py is the same program under its old name.)
--device (default: the deck's `device`, else cpu) cuda puts the model, the batch and the loss on the
GPU (samples are drawn on the host, as pdegen does) and adds the GPU's peak memory
(torch.cuda.max_memory_allocated / max_memory_reserved) to the JSON. Convolutions and matmuls run in
fp32 unless --tf32 (PyTorch's own default lets cuDNN use TF32; pdegen's `cuda::conv_math` default is
tf32, so compare_train.py passes --tf32 on cuda). cuDNN times its algorithms on the first call of a
shape (cudnn.benchmark), as pdegen's `cuda::conv_algo_search` does.
The fastest PyTorch configuration, each off by default (the default is the plain fp32 NCHW peer):
--channels-last puts the model and its input in channels_last (2D) / channels_last_3d (3D) memory
format; --bf16 runs the network under torch.autocast(bfloat16) (worth it on CPUs with AMX or
AVX512-BF16, and on GPUs; the loss stays in --loss-dtype); --compile wraps the model in
torch.compile when this torch has it (2.0 on; with 1.13 it says so and goes on without);
--best = --channels-last --compile, plus --bf16 on a GPU or a CPU with amx_bf16/avx512_bf16.
--max-train-seconds S stops the training once its steps (evaluations excluded) have taken S seconds,
for comparisons at equal wall time; the learning-rate schedule still runs over training.steps.
"""
import argparse
import copy
import hashlib
import json
import math
import multiprocessing
import os
import resource
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import yaml

# ---- deck -----------------------------------------------------------------------------------------

# The defaults of src/config/deck.hpp for the keys the peer reads.
DEFAULTS = {
    "problem": {"pde": None, "resolution": None, "loss": "energy", "correlation_length": 0.5, "kl_modes": 4,
                "sigma": 1.0, "omega_max": 3.0, "source": 0.0},
    "network": {"type": "unet", "depth": 4, "base_channels": 16, "channel_multiplier": 2,
                "convs_per_level": 2, "kernel_size": 3, "norm": "none", "activation": "relu",
                "downsample": "maxpool", "upsample": "transposed_conv"},
    "optimizer": {"type": "adam", "lr": 1e-3, "weight_decay": 0.0, "grad_clip": 0.0, "beta1": 0.9,
                  "beta2": 0.999, "eps": 1e-8, "momentum": 0.9, "nesterov": False,
                  "schedule": {"type": "constant", "warmup_steps": 0, "step_size": 1000, "gamma": 0.5,
                               "min_lr": 0.0}},
    "training": {"steps": 1000, "batch_size": 16, "seed": 0, "micro_batches": 1, "log_every": 10},
    "evaluation": {"every": 100, "samples": 16, "solver_tolerance": 1e-10},
}


def apply_override(root, text):
    """`key.path=value`: the value parsed as YAML, missing sections created, a mapping replaces the
    whole section (as src/config/overrides.cpp)."""
    if "=" not in text:
        sys.exit(f"override '{text}': error: expected key.path=value (for example training.steps=500)")
    key, value = text.split("=", 1)
    path = key.split(".")
    node = root
    for word in path[:-1]:
        if not isinstance(node.get(word), dict):
            if word in node and node[word] is not None:
                sys.exit(f"override '{text}': error: '{word}' holds a value, not a section")
            node[word] = {}
        node = node[word]
    node[path[-1]] = yaml.safe_load(value)


def with_defaults(defaults, given):
    out = copy.deepcopy(defaults)
    for key, value in (given or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = with_defaults(out[key], value)
        else:
            out[key] = value
    return out


def tool_name(pde):
    """The name the peer goes by in messages and its JSON: torch_poisson2d (as before) or torch_poisson3d."""
    return "torch_poisson3d" if pde == "poisson3d" else "torch_poisson2d"


def spatial_dims(deck):
    return 3 if deck["problem"]["pde"] == "poisson3d" else 2


def load_deck(path, overrides):
    with open(path) as f:
        root = yaml.safe_load(f) or {}
    for text in overrides:
        apply_override(root, text)
    deck = with_defaults(DEFAULTS, root)
    p, net, opt = deck["problem"], deck["network"], deck["optimizer"]
    problems = []
    if p["pde"] not in ("poisson2d", "poisson3d"):
        problems.append(f"problem.pde is '{p['pde']}'; the peer trains poisson2d and poisson3d only")
    if p["loss"] not in ("energy", "residual"):
        problems.append(f"problem.loss is '{p['loss']}'; the peer implements the energy and residual losses")
    if not isinstance(p["resolution"], int) or p["resolution"] % (1 << (net["depth"] - 1)):
        problems.append(f"problem.resolution {p['resolution']} is not a multiple of 2^(network.depth - 1)")
    if net["type"] != "unet":
        problems.append(f"network.type '{net['type']}' is not unet")
    if opt["type"] not in ("adam", "adamw", "sgd"):
        problems.append(f"optimizer.type '{opt['type']}': the peer has adam, adamw and sgd")
    if deck.get("precision", "fp32") != "fp32":
        problems.append("precision: the peer trains in fp32 only")
    if deck.get("device", "cpu") not in ("cpu", "cuda"):
        problems.append(f"device '{deck.get('device')}' is not cpu or cuda")
    if problems:
        sys.exit(f"{tool_name(p['pde'])}: " + "; ".join(problems))
    return deck


# ---- Philox4x32-10 and the sampler ----------------------------------------------------------------

_U64 = np.uint64
_MASK32 = _U64(0xFFFFFFFF)
_PHILOX_M0, _PHILOX_M1 = _U64(0xD2511F53), _U64(0xCD9E8D57)
_PHILOX_W0, _PHILOX_W1 = _U64(0x9E3779B9), _U64(0xBB67AE85)


def philox4x32_10(c0, c1, c2, c3, k0, k1):
    """Random123's Philox4x32-10, vectorised: 32-bit words held in uint64 arrays (a 32x32-bit
    product fits in 64 bits, so hi/lo are exact)."""
    c0, c1, c2, c3, k0, k1 = (np.asarray(w, dtype=_U64) for w in (c0, c1, c2, c3, k0, k1))
    for _ in range(10):
        p0 = _PHILOX_M0 * c0
        p1 = _PHILOX_M1 * c2
        c0, c1, c2, c3 = (p1 >> _U64(32)) ^ c1 ^ k0, p1 & _MASK32, (p0 >> _U64(32)) ^ c3 ^ k1, p0 & _MASK32
        k0 = (k0 + _PHILOX_W0) & _MASK32
        k1 = (k1 + _PHILOX_W1) & _MASK32
    return c0, c1, c2, c3


def random_uniform(seed, stream, index):
    """[0, 1) from 53 bits of the block for (seed, stream, index): rng.hpp's random_uniform."""
    seed, stream, index = (np.asarray(v, dtype=_U64) for v in (seed, stream, index))
    w0, w1, _, _ = philox4x32_10(index & _MASK32, index >> _U64(32), stream & _MASK32, stream >> _U64(32),
                                 seed & _MASK32, seed >> _U64(32))
    bits = ((w0 << _U64(21)) ^ (w1 >> _U64(11))) & _U64((1 << 53) - 1)
    return bits.astype(np.float64) * (1.0 / 9007199254740992.0)


EVAL_INDEX_BASE = 1 << 40  # evaluation sample e has global index 2^40 + e
KL_STREAM = 4 << 32  # omega_k of a sample is drawn from stream (4 << 32) | k: kl_sampler.hpp's kl_stream


def kl_root(n, l):
    """The n-th positive root (n >= 1) of tan a = 2 l a / (l^2 a^2 - 1), in its pole-free form
    f(a) = (l^2 a^2 - 1) sin a - 2 l a cos a: the one root in ((n-1) pi, n pi], by bisection."""
    f = lambda a: (l * l * a * a - 1) * math.sin(a) - 2 * l * a * math.cos(a)
    lo, hi = (n - 1) * math.pi, n * math.pi
    sign_hi = math.copysign(1.0, f(hi))  # f((n-1) pi) has the other sign (f ~ -(1 + 2l) a near 0)
    while True:
        mid = 0.5 * (lo + hi)
        if mid <= lo or mid >= hi:  # the bracket is down to adjacent doubles
            return mid
        if math.copysign(1.0, f(mid)) == sign_hi:
            hi = mid
        else:
            lo = mid


def kl_eigenpairs_1d(n, l, m):
    """(a, lambda, phi) of the first m 1D eigenpairs, phi [m, n] at the n nodes x = i / (n - 1)."""
    a = np.array([kl_root(k, l) for k in range(1, m + 1)])
    lam = 2 * l / (1 + l * l * a * a)
    # c^2 = int_0^1 (l a cos(a x) + sin(a x))^2 dx, in the general form (right whatever a's last bit)
    s2a = np.sin(2 * a) / (4 * a)
    norm2 = l * l * a * a * (0.5 + s2a) + l * np.sin(a) ** 2 + 0.5 - s2a
    x = np.arange(n) / (n - 1)
    phi = (l * a[:, None] * np.cos(a[:, None] * x) + np.sin(a[:, None] * x)) / np.sqrt(norm2)[:, None]
    return a, lam, phi


class KlSampler2D:
    """log nu fields of poisson2d samples by global index, as fp32."""

    def __init__(self, problem, seed):
        n, l, m = problem["resolution"], float(problem["correlation_length"]), int(problem["kl_modes"])
        self.n, self.seed, self.modes = n, int(seed), m
        self.sigma, self.omega_max = float(problem["sigma"]), float(problem["omega_max"])
        # The m largest products lambda_i lambda_j only use the first m 1D eigenpairs.
        self.roots, self.lam, phi = kl_eigenpairs_1d(n, l, m)
        self.phi = phi  # [m, n]: the 1D eigenfunctions at the nodes
        pairs = sorted(((i, j) for i in range(m) for j in range(m)),
                       key=lambda ij: (-(self.lam[ij[0]] * self.lam[ij[1]]), ij[0] + ij[1], ij[0]))[:m]
        self.pairs = pairs
        weight = np.array([math.sqrt(self.lam[i] * self.lam[j]) for i, j in pairs])
        self.phi_x = phi[[i for i, _ in pairs]] * weight[:, None]  # [m, Nx], weight folded in
        self.phi_y = phi[[j for _, j in pairs]]  # [m, Ny]

    def omegas(self, indices):
        """omega_k = omega_max (2U - 1) for the samples `indices`: [len, m]."""
        g = np.asarray(indices, dtype=_U64)[:, None]
        k = np.arange(self.modes, dtype=_U64)[None, :]
        return self.omega_max * (2 * random_uniform(self.seed, _U64(KL_STREAM) | k, g) - 1)

    def log_nu(self, indices):
        """[len, Ny, Nx] fp32, x fastest."""
        w = self.omegas(indices)
        field = self.sigma * np.einsum("bk,ky,kx->byx", w, self.phi_y, self.phi_x, optimize=True)
        return field.astype(np.float32)

    def training_batch(self, step, batch):
        return self.log_nu(np.arange(batch, dtype=np.uint64) + np.uint64(step * batch))

    def evaluation_set(self, count):
        return self.log_nu(np.arange(count, dtype=np.uint64) + np.uint64(EVAL_INDEX_BASE))


def kl_modes_3d(lam, m):
    """The first m 3D modes (i, j, k) in decreasing lambda_i lambda_j lambda_k. The product is formed
    from the three eigenvalues in index order, so the permutations of one triple give bitwise the same
    product and tie exactly (only permutations tie in exact arithmetic); ties are ordered by
    (i + j + k, i, j) ascending, which is the 2D rule (i + j, i) with one more axis. All indices are
    below m ((i+1)(j+1)(k+1) triples dominate or equal (i, j, k)), so m^3 candidates are enough."""
    def product(t):
        a, b, c = sorted(t)
        return lam[a] * lam[b] * lam[c]
    triples = [(i, j, k) for i in range(m) for j in range(m) for k in range(m)]
    return sorted(triples, key=lambda t: (-product(t), t[0] + t[1] + t[2], t[0], t[1]))[:m], product


class KlSampler3D:
    """log nu fields of poisson3d samples by global index, as fp32
    [len, Nz, Ny, Nx], x fastest. The same Philox streams as 2D: omega_k of sample g from stream
    (4 << 32) | k."""

    def __init__(self, problem, seed):
        n, l, m = problem["resolution"], float(problem["correlation_length"]), int(problem["kl_modes"])
        self.n, self.seed, self.modes = n, int(seed), m
        self.sigma, self.omega_max = float(problem["sigma"]), float(problem["omega_max"])
        self.roots, self.lam, self.phi = kl_eigenpairs_1d(n, l, m)
        self.triples, product = kl_modes_3d(self.lam, m)
        self.weights = np.array([math.sqrt(product(t)) for t in self.triples])
        self.phi_x = self.phi[[t[0] for t in self.triples]]  # [m, Nx]
        self.phi_y = self.phi[[t[1] for t in self.triples]]  # [m, Ny]
        self.phi_z = self.phi[[t[2] for t in self.triples]]  # [m, Nz]

    omegas = KlSampler2D.omegas

    def log_nu(self, indices):
        """sigma * sum_k omega_k w_k phi_ik(x) phi_jk(y) phi_kk(z), in fp64, summed in mode order at
        every node, stored fp32: [len, Nz, Ny, Nx]."""
        w = self.omegas(indices)  # [len, m]
        coef = self.sigma * w * self.weights[None, :]  # [len, m]
        n = self.n
        field = np.zeros((len(w), n, n, n))
        for k in range(self.modes):
            # As kl_sampler.cpp: (c phi_y(y)) phi_z(z) per (z, y) line, then times phi_x(x), summed in
            # mode order, so the fp64 values are pdegen's bit for bit.
            line = (coef[:, k, None] * self.phi_y[k][None, :])[:, None, :] * self.phi_z[k][None, :, None]
            field += line[:, :, :, None] * self.phi_x[k][None, None, None, :]
        return field.astype(np.float32)

    training_batch = KlSampler2D.training_batch
    evaluation_set = KlSampler2D.evaluation_set


def make_sampler(problem, seed):
    return KlSampler3D(problem, seed) if problem["pde"] == "poisson3d" else KlSampler2D(problem, seed)


# ---- Q1 energy (torch, over all elements at once) -------------------------------------------------

_G = 1 / math.sqrt(3)
# Gauss points (xi, eta) in q1_kernels.hpp's order, and the shape functions there at each.
GAUSS = [(-_G, -_G), (_G, -_G), (-_G, _G), (_G, _G)]
SHAPE = [[0.25 * (1 + xa * qx) * (1 + ya * qy) for xa, ya in ((-1, -1), (1, -1), (-1, 1), (1, 1))]
         for qx, qy in GAUSS]


def corners(t):
    """The four nodal values of every element, local order (i,j), (i+1,j), (i,j+1), (i+1,j+1)."""
    return t[:, :-1, :-1], t[:, :-1, 1:], t[:, 1:, :-1], t[:, 1:, 1:]


def q1_energy(u, nu, source, h):
    """Per-sample energy J(u) = sum_e sum_q |J| (1/2 nu_q |grad u_q|^2 - f u_q) on [B, Ny, Nx] nodal
    u and nu (q1_kernels.hpp: 2x2 Gauss, nu bilinear to the Gauss points, |J| = h^2/4). The element
    terms are in u's dtype; the sum over elements is accumulated in fp64."""
    u0, u1, u2, u3 = corners(u)
    nus = corners(nu)
    dx_bottom, dx_top, dy_left, dy_right = u1 - u0, u3 - u2, u2 - u0, u3 - u1
    density = 0
    for (qx, qy), n_q in zip(GAUSS, SHAPE):
        ux = ((1 - qy) * dx_bottom + (1 + qy) * dx_top) * (1 / (2 * h))
        uy = ((1 - qx) * dy_left + (1 + qx) * dy_right) * (1 / (2 * h))
        nu_q = n_q[0] * nus[0] + n_q[1] * nus[1] + n_q[2] * nus[2] + n_q[3] * nus[3]
        density = density + nu_q * (ux * ux + uy * uy)
    energy = (0.5 * h * h / 4) * density
    if source != 0:
        # f constant: sum_q N_a(q) = 1 for 2x2 Gauss, so sum_q |J| f u_q = |J| f (u0 + u1 + u2 + u3).
        energy = energy - (h * h / 4 * source) * (u0 + u1 + u2 + u3)
    return energy.to(torch.float64).sum(dim=(1, 2))


# 1D linear shape functions at the Gauss points -g, +g: (weight of the lower node, of the upper node).
GAUSS_1D = ((0.5 * (1 + _G), 0.5 * (1 - _G)), (0.5 * (1 - _G), 0.5 * (1 + _G)))


def _interp(t, dim, q):
    """Linear interpolation along `dim` to Gauss point q (0: -g, 1: +g) of every cell: size - 1."""
    m = t.shape[dim] - 1
    lower, upper = GAUSS_1D[q]
    return lower * t.narrow(dim, 0, m) + upper * t.narrow(dim, 1, m)


def q1_energy_3d(u, nu, source, h):
    """Per-sample energy J(u) = sum_e sum_q |J| (1/2 nu_q |grad u_q|^2 - f u_q) on [B, Nz, Ny, Nx]
    nodal u and nu: Q1 (trilinear) hexahedra, 2x2x2 Gauss points of weight 1, |J| = h^3/8, nu
    trilinear to the Gauss points. Trilinear interpolation is separable, so it is done axis by axis:
    du/dx at Gauss point (qx, qy, qz) is the x difference quotient of the cell's 4 x-edges
    interpolated in y and z (it does not depend on qx), and likewise for y and z. The element terms
    are in u's dtype; the sum over elements is accumulated in fp64."""
    X, Y, Z = 3, 2, 1  # axes of [B, Nz, Ny, Nx]
    inv_h = 1.0 / h
    dx = (u.narrow(X, 1, u.shape[X] - 1) - u.narrow(X, 0, u.shape[X] - 1)) * inv_h
    dy = (u.narrow(Y, 1, u.shape[Y] - 1) - u.narrow(Y, 0, u.shape[Y] - 1)) * inv_h
    dz = (u.narrow(Z, 1, u.shape[Z] - 1) - u.narrow(Z, 0, u.shape[Z] - 1)) * inv_h
    # Each cut down to [B, Nz-1, Ny-1, Nx-1] by interpolating along the other two axes.
    ux = {(qy, qz): _interp(_interp(dx, Y, qy), Z, qz) for qy in (0, 1) for qz in (0, 1)}
    uy = {(qx, qz): _interp(_interp(dy, X, qx), Z, qz) for qx in (0, 1) for qz in (0, 1)}
    uz = {(qx, qy): _interp(_interp(dz, X, qx), Y, qy) for qx in (0, 1) for qy in (0, 1)}
    nu_x = [_interp(nu, X, qx) for qx in (0, 1)]
    nu_xy = {(qx, qy): _interp(nu_x[qx], Y, qy) for qx in (0, 1) for qy in (0, 1)}
    density = 0
    for qz in (0, 1):
        for qy in (0, 1):
            for qx in (0, 1):
                nu_q = _interp(nu_xy[qx, qy], Z, qz)
                g2 = ux[qy, qz] * ux[qy, qz] + uy[qx, qz] * uy[qx, qz] + uz[qx, qy] * uz[qx, qy]
                density = density + nu_q * g2
    energy = (0.5 * h ** 3 / 8) * density
    if source != 0:
        # f constant: sum_q N_a(q) = 1 for 2x2x2 Gauss, so sum_q |J| f u_q = |J| f (sum of the 8 corners).
        c = u.narrow(X, 0, u.shape[X] - 1) + u.narrow(X, 1, u.shape[X] - 1)
        c = c.narrow(Y, 0, c.shape[Y] - 1) + c.narrow(Y, 1, c.shape[Y] - 1)
        c = c.narrow(Z, 0, c.shape[Z] - 1) + c.narrow(Z, 1, c.shape[Z] - 1)
        energy = energy - (h ** 3 / 8 * source) * c
    return energy.to(torch.float64).sum(dim=(1, 2, 3))


def residual_loss(energy, u, nu, source, h, mask):
    """Per-sample J_res(u) = ||K u - F||^2 over the free nodes (mask 1), K u - F being the gradient of
    the energy J with respect to the nodal u (autograd, with its graph, so the loss can be trained)."""
    if not u.requires_grad:
        u = u.detach().requires_grad_()
    grad, = torch.autograd.grad(energy(u, nu, source, h).sum(), u, create_graph=True)
    r = grad * mask
    return (r * r).to(torch.float64).sum(dim=tuple(range(1, u.dim())))


def dirichlet_lift(n, dtype=torch.float32, dims=2):
    """(m, (1 - m) g) of u = m * net + (1 - m) g: m = 0 on the x = 0 and x = 1 faces (the first and
    last index of the last axis), g = 1 at x = 0. [n, n] or [n, n, n]."""
    mask = torch.ones((n,) * dims, dtype=dtype)
    mask[..., 0] = 0
    mask[..., -1] = 0
    boundary = torch.zeros((n,) * dims, dtype=dtype)
    boundary[..., 0] = 1
    return mask, boundary


# ---- reference solution (scipy) -------------------------------------------------------------------

def element_matrix_table():
    """T[q, a, b] with K_e = sum_q nu_q T[q]: |J| (dN_a/dx dN_b/dx + dN_a/dy dN_b/dy) at Gauss point q
    (q1_kernels.hpp's element_matrix with hx = hy, where |J| (2/h)^2 = 1)."""
    nodes = ((-1, -1), (1, -1), (-1, 1), (1, 1))
    t = np.zeros((4, 4, 4))
    for q, (qx, qy) in enumerate(GAUSS):
        dxi = np.array([0.25 * xa * (1 + ya * qy) for xa, ya in nodes])
        deta = np.array([0.25 * ya * (1 + xa * qx) for xa, ya in nodes])
        t[q] = np.outer(dxi, dxi) + np.outer(deta, deta)
    return t


def assemble_q1(nu, source):
    """Global K (scipy CSR) and F of the Q1 system on the n x n grid for nodal nu [n, n] (fp64)."""
    import scipy.sparse as sp
    n = nu.shape[0]
    h = 1.0 / (n - 1)
    nu_q = np.stack(corners(nu[None].astype(np.float64)), axis=-1)[0].reshape(-1, 4) @ np.array(SHAPE).T
    ke = np.einsum("eq,qab->eab", nu_q, element_matrix_table())
    j, i = np.meshgrid(np.arange(n - 1), np.arange(n - 1), indexing="ij")
    base = (j * n + i).reshape(-1)
    idx = np.stack([base, base + 1, base + n, base + n + 1], axis=1)
    rows = np.repeat(idx, 4, axis=1).reshape(-1)
    cols = np.tile(idx, (1, 4)).reshape(-1)
    k = sp.csr_matrix((ke.reshape(-1), (rows, cols)), shape=(n * n, n * n))
    f = np.zeros(n * n)
    np.add.at(f, idx.reshape(-1), h * h / 4 * source)
    return k, f


def reference_solution(log_nu, source, tolerance):
    """u_ref of one sample: K u = F on the free nodes, u = 1 at x = 0 and 0 at x = 1, by sparse LU
    with iterative refinement until the relative residual is below `tolerance`."""
    import scipy.sparse.linalg as spla
    n = log_nu.shape[0]
    k, f = assemble_q1(np.exp(log_nu.astype(np.float64)), source)
    u = np.zeros((n, n))
    u[:, 0] = 1.0
    u = u.reshape(-1)
    free = np.ones((n, n), dtype=bool)
    free[:, 0] = free[:, -1] = False
    free = free.reshape(-1)
    a = k[free][:, free].tocsc()
    b = f[free] - k[free][:, ~free] @ u[~free]
    # K is SPD: a symmetric fill-reducing ordering and no pivoting (SuperLU's default COLAMD with
    # partial pivoting fills about 1.7x more).
    lu = spla.splu(a, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0, options={"SymmetricMode": True})
    x = lu.solve(b)
    for _ in range(5):
        r = b - a @ x
        rel = np.linalg.norm(r) / max(np.linalg.norm(b), 1e-300)
        if rel <= tolerance:
            break
        x = x + lu.solve(r)
    else:
        raise RuntimeError(f"reference solve stopped at relative residual {rel:.2e} > {tolerance:.0e}")
    u[free] = x
    return u.reshape(n, n), rel


NODES_3D = [(xa, ya, za) for za in (-1, 1) for ya in (-1, 1) for xa in (-1, 1)]  # local a = ax + 2 ay + 4 az
GAUSS_3D = [(qx * _G, qy * _G, qz * _G) for qz in (-1, 1) for qy in (-1, 1) for qx in (-1, 1)]
SHAPE_3D = np.array([[0.125 * (1 + xa * qx) * (1 + ya * qy) * (1 + za * qz) for xa, ya, za in NODES_3D]
                     for qx, qy, qz in GAUSS_3D])  # [q, a]


def element_matrix_table_3d(h):
    """T[q, a, b] with K_e = sum_q nu_q T[q]: |J| grad N_a . grad N_b at Gauss point q, |J| = h^3/8 and
    d/dx = (2/h) d/dxi, so |J| (2/h)^2 = h/2."""
    t = np.zeros((8, 8, 8))
    for q, (qx, qy, qz) in enumerate(GAUSS_3D):
        g = np.array([[0.125 * xa * (1 + ya * qy) * (1 + za * qz), 0.125 * ya * (1 + xa * qx) * (1 + za * qz),
                       0.125 * za * (1 + xa * qx) * (1 + ya * qy)] for xa, ya, za in NODES_3D])  # [a, 3]
        t[q] = (h / 2) * g @ g.T
    return t


def assemble_q1_3d(nu, source):
    """Global K (scipy CSR) and F of the Q1 hexahedral system on the n^3 grid for nodal nu [n, n, n]
    (z, y, x; fp64); node (i, j, k) is number (k n + j) n + i."""
    import scipy.sparse as sp
    n = nu.shape[0]
    h = 1.0 / (n - 1)
    k, j, i = np.meshgrid(np.arange(n - 1), np.arange(n - 1), np.arange(n - 1), indexing="ij")
    base = ((k * n + j) * n + i).reshape(-1).astype(np.int64)
    offsets = np.array([(za > 0) * n * n + (ya > 0) * n + (xa > 0) for xa, ya, za in NODES_3D])
    idx = base[:, None] + offsets[None, :]  # [E, 8]
    nu_q = nu.reshape(-1)[idx] @ SHAPE_3D.T  # [E, q]
    ke = nu_q @ element_matrix_table_3d(h).reshape(8, 64)  # [E, 64]
    index_type = np.int32 if n ** 3 < 2 ** 31 else np.int64
    rows = np.repeat(idx, 8, axis=1).reshape(-1).astype(index_type)
    cols = np.tile(idx, (1, 8)).reshape(-1).astype(index_type)
    kmat = sp.coo_matrix((ke.reshape(-1), (rows, cols)), shape=(n ** 3, n ** 3)).tocsr()
    f = np.zeros(n ** 3)
    np.add.at(f, idx.reshape(-1), h ** 3 / 8 * source)
    return kmat, f


def _cg(a, b, x0, tolerance, preconditioner):
    """scipy's CG to relative residual `tolerance`, whichever keyword this scipy has for it."""
    import scipy.sparse.linalg as spla
    try:
        return spla.cg(a, b, x0=x0, rtol=tolerance, atol=0.0, maxiter=20000, M=preconditioner)
    except TypeError:  # scipy < 1.12
        return spla.cg(a, b, x0=x0, tol=tolerance, atol=0.0, maxiter=20000, M=preconditioner)


def reference_solution_3d(log_nu, source, tolerance):
    """u_ref of one poisson3d sample: K u = F on the free nodes, u = 1 at x = 0 and 0 at x = 1, by
    conjugate gradients preconditioned with pyamg's smoothed aggregation V-cycle (Jacobi without
    pyamg), restarted from the last iterate until the true relative residual is below `tolerance`."""
    import scipy.sparse as sp
    n = log_nu.shape[0]
    k, f = assemble_q1_3d(np.exp(log_nu.astype(np.float64)), source)
    u = np.zeros((n, n, n))
    u[..., 0] = 1.0
    u = u.reshape(-1)
    free = np.ones((n, n, n), dtype=bool)
    free[..., 0] = free[..., -1] = False
    free = free.reshape(-1)
    a = k[free][:, free].tocsr()
    b = f[free] - k[free][:, ~free] @ u[~free]
    del k
    try:
        import pyamg
        preconditioner = pyamg.smoothed_aggregation_solver(a, symmetry="hermitian").aspreconditioner(cycle="V")
    except ImportError:
        preconditioner = sp.diags(1.0 / a.diagonal())
    x = np.zeros_like(b)
    norm_b = max(np.linalg.norm(b), 1e-300)
    for _ in range(5):
        x, _info = _cg(a, b, x, 0.5 * tolerance, preconditioner)
        rel = np.linalg.norm(b - a @ x) / norm_b
        if rel <= tolerance:
            break
    else:
        raise RuntimeError(f"reference solve stopped at relative residual {rel:.2e} > {tolerance:.0e}")
    u[free] = x
    return u.reshape(n, n, n), rel


def _solve_all(args):
    fields, source, tolerance = args
    solve = reference_solution_3d if fields.ndim == 4 else reference_solution
    return [solve(f, source, tolerance) for f in fields]


def reference_solutions(fields, source, tolerance, processes=1, cache_dir=None):
    """All references, solved in child processes (`processes` of them) so the sparse factorisations
    do not count in this process's peak RSS (the training's memory is what is compared). With
    `cache_dir`, solutions are kept there under a hash of the inputs and reused."""
    path = None
    if cache_dir:
        digest = hashlib.sha1(fields.tobytes() + repr((fields.shape, source, tolerance)).encode())
        key = digest.hexdigest()[:20]
        path = os.path.join(cache_dir, f"torch_poisson{fields.ndim - 1}d_ref_{key}.npz")
        if os.path.exists(path):
            with np.load(path) as z:
                return z["u"], float(z["residual"])
    chunks = [c for c in np.array_split(fields, max(1, min(processes, len(fields)))) if len(c)]
    with multiprocessing.get_context("fork").Pool(len(chunks)) as pool:
        results = sum(pool.map(_solve_all, [(c, source, tolerance) for c in chunks]), [])
    u, residual = np.stack([u for u, _ in results]), max(r for _, r in results)
    if path:
        os.makedirs(cache_dir, exist_ok=True)
        np.savez(path + ".tmp.npz", u=u, residual=residual)
        os.replace(path + ".tmp.npz", path)
    return u, residual


# ---- network --------------------------------------------------------------------------------------

ACTIVATIONS = {"relu": nn.ReLU, "leaky_relu": lambda: nn.LeakyReLU(0.01), "tanh": nn.Tanh, "silu": nn.SiLU,
               "sigmoid": nn.Sigmoid}


# The layer classes of each spatial dimension.
LAYERS = {2: dict(conv=nn.Conv2d, conv_t=nn.ConvTranspose2d, pool=nn.MaxPool2d, avgpool=nn.AvgPool2d, batch=nn.BatchNorm2d,
                  instance=nn.InstanceNorm2d),
          3: dict(conv=nn.Conv3d, conv_t=nn.ConvTranspose3d, pool=nn.MaxPool3d, avgpool=nn.AvgPool3d, batch=nn.BatchNorm3d,
                  instance=nn.InstanceNorm3d)}


def conv_block(net, cin, cout, dims=2):
    """convs_per_level x [conv k, padding k/2 -> norm -> activation]; a conv bias only without norm."""
    k, norm, L = net["kernel_size"], net["norm"], LAYERS[dims]
    layers = []
    for j in range(net["convs_per_level"]):
        layers.append(L["conv"](cin if j == 0 else cout, cout, k, padding=k // 2, bias=norm == "none"))
        if norm == "batch":
            layers.append(L["batch"](cout))
        elif norm == "instance":
            layers.append(L["instance"](cout, affine=True))
        elif norm != "none":
            sys.exit(f"torch_poisson: network.norm '{norm}' is unknown")
        layers.append(ACTIVATIONS[net["activation"]]())
    return nn.Sequential(*layers)


class UNet(nn.Module):
    """src/nn/unet_plan.hpp's U-Net: c_i = base * mult^i, depth levels including the bottleneck,
    skip concat with the encoder output first, 1x1 head with bias; `dims` 2 or 3 (spatial_dims)."""

    def __init__(self, net, in_channels=1, out_channels=1, dims=2):
        super().__init__()
        depth, L = net["depth"], LAYERS[dims]
        ch = [net["base_channels"] * net["channel_multiplier"] ** i for i in range(depth)]
        bias = net["norm"] == "none"
        self.down, self.enc, self.up, self.dec = (nn.ModuleList() for _ in range(4))
        cin = in_channels
        for i in range(depth):
            if i > 0:
                if net["downsample"] == "strided_conv":
                    self.down.append(L["conv"](ch[i - 1], ch[i - 1], 2, stride=2, bias=bias))
                else:
                    self.down.append(L["pool" if net["downsample"] == "maxpool" else "avgpool"](2))
            self.enc.append(conv_block(net, cin, ch[i], dims))
            cin = ch[i]
        for i in range(depth - 2, -1, -1):
            if net["upsample"] == "transposed_conv":
                self.up.append(L["conv_t"](ch[i + 1], ch[i], 2, stride=2, bias=bias))
            else:
                self.up.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                                             L["conv"](ch[i + 1], ch[i], 3, padding=1, bias=bias)))
            self.dec.append(conv_block(net, 2 * ch[i], ch[i], dims))
        self.head = L["conv"](ch[0], out_channels, 1, bias=True)

    def forward(self, x):
        skips = []
        for i, block in enumerate(self.enc):
            if i > 0:
                x = self.down[i - 1](x)
            x = block(x)
            skips.append(x)
        for k, (up, block) in enumerate(zip(self.up, self.dec)):
            x = block(torch.cat([skips[len(skips) - 2 - k], up(x)], dim=1))
        return self.head(x)


# ---- optimizer and schedule -----------------------------------------------------------------------

def make_optimizer(params, opt):
    if opt["type"] == "adam":
        return torch.optim.Adam(params, lr=opt["lr"], betas=(opt["beta1"], opt["beta2"]), eps=opt["eps"],
                                weight_decay=opt["weight_decay"])
    if opt["type"] == "adamw":
        return torch.optim.AdamW(params, lr=opt["lr"], betas=(opt["beta1"], opt["beta2"]), eps=opt["eps"],
                                 weight_decay=opt["weight_decay"])
    return torch.optim.SGD(params, lr=opt["lr"], momentum=opt["momentum"], nesterov=opt["nesterov"],
                           weight_decay=opt["weight_decay"])


def lr_factor(step, steps, opt):
    """Learning rate of 0-based `step` over optimizer.lr, as src/optim/schedule.cpp: linear warm-up
    ((step+1)/warmup_steps), then constant, step (gamma^floor(t/step_size)) or cosine (lr at the first
    step after the warm-up, min_lr at the last), t counted from the end of the warm-up."""
    s = opt["schedule"]
    warm = s["warmup_steps"]
    if step < warm:
        return (step + 1) / warm
    t = step - warm
    if s["type"] == "step":
        return s["gamma"] ** (t // s["step_size"])
    if s["type"] == "cosine":
        span = steps - 1 - warm  # a run with no step after the warm-up is all "last step"
        progress = min(1.0, t / span) if span > 0 else 1.0
        low = s["min_lr"] / opt["lr"]
        return low + (1 - low) * 0.5 * (1 + math.cos(math.pi * progress))
    return 1.0


# ---- training -------------------------------------------------------------------------------------

class Evaluator:
    """rel_l2 of the network on the evaluation samples against their reference solutions."""

    def __init__(self, sampler, deck, mask, boundary, processes, cache_dir):
        count = deck["evaluation"]["samples"]
        self.inputs = sampler.evaluation_set(count)
        t = time.perf_counter()
        self.u_ref, self.residual = reference_solutions(
            self.inputs, float(deck["problem"]["source"]), float(deck["evaluation"]["solver_tolerance"]),
            processes, cache_dir)
        self.seconds = time.perf_counter() - t
        self.batch = deck["training"]["batch_size"]
        self.mask, self.boundary = mask, boundary
        self.device = None  # the model's device when not the host; set once the model is there

    def __call__(self, model, forward=None):
        """`forward(model, x)`, when given, runs the network as the training does (memory format,
        autocast) and returns fp32; else model(x)."""
        was_training = model.training
        model.eval()
        errors = []
        with torch.no_grad():
            for start in range(0, len(self.inputs), self.batch):
                x = torch.from_numpy(self.inputs[start:start + self.batch]).unsqueeze(1)
                if self.device is not None:
                    x = x.to(self.device)
                y = forward(model, x) if forward is not None else model(x)
                u = (y[:, 0] * self.mask + self.boundary).double().cpu().numpy()
                ref = self.u_ref[start:start + self.batch]
                errors += list(np.linalg.norm((u - ref).reshape(len(u), -1), axis=1) /
                               np.linalg.norm(ref.reshape(len(u), -1), axis=1))
        model.train(was_training)
        return float(np.mean(errors)), float(np.max(errors))


def peak_rss_bytes():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def no_sync():
    pass


def use_device(name, tf32, cudnn_benchmark):
    """(torch.device, a function that waits for its queued work); exits when cuda is asked for but
    missing. Call only after the reference solutions: their child processes are forked, and a
    process should not fork once CUDA is initialised."""
    if name == "cpu":
        return torch.device("cpu"), no_sync
    if not torch.cuda.is_available():
        sys.exit(f"torch_poisson: device cuda, but torch {torch.__version__} sees no CUDA device")
    # Both switches: no convolution or matmul rounds its inputs to TF32 unless asked.
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.benchmark = cudnn_benchmark
    return torch.device("cuda"), torch.cuda.synchronize


def cpu_has_bf16():
    """Whether the CPU has bf16 matrix or vector instructions (AMX-BF16 or AVX512-BF16), from /proc/cpuinfo."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = set(next((line for line in f if line.startswith("flags")), "").split())
    except OSError:
        return False
    return bool(flags & {"amx_bf16", "avx512_bf16"})


def configure(args, on_gpu):
    """Resolves --best into its parts; returns a note on what was asked for and is not possible."""
    notes = []
    if args.best:
        args.channels_last = args.compile = True
        args.bf16 = args.bf16 or on_gpu or cpu_has_bf16()
    elif args.bf16 and not on_gpu and not cpu_has_bf16():
        notes.append("--bf16 on a CPU without amx_bf16/avx512_bf16: emulated, expect it slower")
    if args.compile and not hasattr(torch, "compile"):
        notes.append(f"--compile: torch {torch.__version__} has no torch.compile (2.0 on); running eagerly")
        args.compile = False
    return notes


def train(deck, args):
    t_start = time.perf_counter()
    tr, p, opt = deck["training"], deck["problem"], deck["optimizer"]
    dims = spatial_dims(deck)
    tool = tool_name(p["pde"])
    steps, batch, n = int(tr["steps"]), int(tr["batch_size"]), int(p["resolution"])
    every = 0 if args.eval_only_at_end else int(deck["evaluation"]["every"])
    log_every = max(int(tr["log_every"]), 1)
    h, source = 1.0 / (n - 1), float(p["source"])
    energy = q1_energy_3d if dims == 3 else q1_energy
    sampler = make_sampler(p, tr["seed"])
    mask, boundary = dirichlet_lift(n, dims=dims)
    # First, before torch starts its OpenMP threads: the references are solved in a forked child.
    evaluator = Evaluator(sampler, deck, mask, boundary, args.threads, args.ref_cache)
    device, sync = use_device(args.device or deck.get("device", "cpu"), args.tf32, args.cudnn_benchmark)
    on_gpu = device.type == "cuda"
    notes = configure(args, on_gpu)
    torch.set_num_threads(args.threads)
    torch.manual_seed(int(tr["seed"]))
    model = UNet(deck["network"], dims=dims)  # initialised on the host, so the weights are the CPU run's
    parameters = sum(w.numel() for w in model.parameters())
    if on_gpu:
        model = model.to(device)
        mask, boundary = mask.to(device), boundary.to(device)
        evaluator.mask, evaluator.boundary, evaluator.device = mask, boundary, device
    memory_format = ((torch.channels_last_3d if dims == 3 else torch.channels_last) if args.channels_last
                     else torch.contiguous_format)
    if args.channels_last:
        model = model.to(memory_format=memory_format)
    optimizer = make_optimizer(model.parameters(), opt)  # before compiling: the same parameters
    network = torch.compile(model) if args.compile else model

    def forward(net, x):
        """The network's fp32 output for input x [B, 1, ...] in the configured format and precision."""
        if args.channels_last:
            x = x.contiguous(memory_format=memory_format)
        if args.bf16:
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
                return net(x).float()
        return net(x)

    loss_dtype = torch.float64 if args.loss_dtype == "float64" else torch.float32
    where = (f"cuda ({torch.cuda.get_device_name(device)}, TF32 {'on' if args.tf32 else 'off'})" if on_gpu
             else f"{args.threads} threads")
    extras = [name for name, on in (("channels_last", args.channels_last), ("bf16 autocast", args.bf16),
                                    ("torch.compile", args.compile), ("residual loss", p["loss"] == "residual"))
              if on]
    grid = "x".join([str(n)] * dims)
    print(f"{tool}: {grid}, batch {batch}, {steps} steps, {where}, torch "
          f"{torch.__version__}, {parameters:,} parameters{''.join(', ' + e for e in extras)}; "
          f"{len(evaluator.inputs)} references in "
          f"{evaluator.seconds:.1f} s (max rel. residual {evaluator.residual:.1e})", flush=True)
    for note in notes:
        print(f"{tool}: note: {note}", flush=True)

    step_seconds, loss_value, rel = [], float("nan"), (float("nan"), float("nan"))
    evaluated_at, done = -1, 0
    t_train = time.perf_counter()
    for step in range(steps):
        sync()
        t = time.perf_counter()
        lr = opt["lr"] * lr_factor(step, steps, opt)
        for group in optimizer.param_groups:
            group["lr"] = lr
        log_nu = torch.from_numpy(sampler.training_batch(step, batch))
        if on_gpu:
            log_nu = log_nu.to(device)
        u = forward(network, log_nu.unsqueeze(1))[:, 0] * mask + boundary
        u, nu = u.to(loss_dtype), torch.exp(log_nu).to(loss_dtype)
        if p["loss"] == "residual":
            loss = residual_loss(energy, u, nu, source, h, mask.to(loss_dtype)).sum() / batch
        else:
            loss = energy(u, nu, source, h).sum() / batch
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if opt["grad_clip"] > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), opt["grad_clip"])
        optimizer.step()
        loss_value = loss.item()
        sync()
        step_seconds.append(time.perf_counter() - t)
        done = step + 1
        out_of_time = args.max_train_seconds is not None and sum(step_seconds) >= args.max_train_seconds
        if done % log_every == 0 or done == 1 or done == steps or out_of_time:
            print(f"step {done}/{steps} loss {loss_value:.8e} lr {lr:.3e} step_s {step_seconds[-1]:.4f} "
                  f"samples/s {batch / step_seconds[-1]:.1f}", flush=True)
        if every > 0 and done % every == 0:
            rel, evaluated_at = evaluator(network, forward), done
            print(f"eval step {done} rel_l2 mean {rel[0]:.4e} max {rel[1]:.4e}", flush=True)
        if out_of_time:
            print(f"stopped after {done} steps: --max-train-seconds {args.max_train_seconds:g} reached", flush=True)
            break
    train_seconds = time.perf_counter() - t_train
    if evaluated_at != done:
        rel = evaluator(network, forward)
        print(f"eval step {done} rel_l2 mean {rel[0]:.4e} max {rel[1]:.4e}", flush=True)
    timed = step_seconds[3:] if len(step_seconds) > 3 else step_seconds
    median = statistics.median(timed) if timed else float("nan")
    # Only GPU runs add keys, so the CPU JSON stays what it was.
    gpu = {"device": "cuda", "device_name": torch.cuda.get_device_name(device),
           "cudnn": torch.backends.cudnn.version(), "tf32": bool(args.tf32),
           "peak_device_bytes": torch.cuda.max_memory_allocated(device),
           "peak_device_reserved_bytes": torch.cuda.max_memory_reserved(device)} if on_gpu else {}
    # Likewise the keys of what a default poisson2d run does not do.
    extra = {}
    if dims == 3 or args.channels_last or args.bf16 or args.compile or p["loss"] != "energy":
        extra = {"pde": p["pde"], "loss": p["loss"], "channels_last": bool(args.channels_last),
                 "bf16": bool(args.bf16), "compile": bool(args.compile)}
    if args.max_train_seconds is not None:
        extra.update(max_train_seconds=args.max_train_seconds, planned_steps=steps,
                     step_seconds_sum=sum(step_seconds))
    return {
        "tool": tool, "torch": torch.__version__, "threads": args.threads, "resolution": n,
        "batch_size": batch, "steps": done, "parameters": parameters,
        "wall_seconds": time.perf_counter() - t_start, "train_seconds": train_seconds,
        "reference_seconds": evaluator.seconds, "median_step_seconds": median,
        "min_step_seconds": min(timed) if timed else float("nan"),  # the least disturbed on a busy machine
        "samples_per_s": batch / median if median > 0 else float("nan"), "peak_rss_bytes": peak_rss_bytes(),
        "final_loss": loss_value, "rel_l2_mean": rel[0], "rel_l2_max": rel[1], **gpu, **extra,
    }


# ---- self-test ------------------------------------------------------------------------------------

def dense_q1_system(nu, source):
    """Independent dense assembly for the self-test: explicit loops over elements and Gauss points
    with the bilinear basis written in physical coordinates."""
    n = nu.shape[0]
    h = 1.0 / (n - 1)
    k, f = np.zeros((n * n, n * n)), np.zeros(n * n)
    gauss_1d = (0.5 - 0.5 / math.sqrt(3), 0.5 + 0.5 / math.sqrt(3))  # on [0, 1]
    for j in range(n - 1):
        for i in range(n - 1):
            nodes = [(i, j), (i + 1, j), (i, j + 1), (i + 1, j + 1)]
            for sy in gauss_1d:
                for sx in gauss_1d:
                    # basis on the unit cell: N = bx(sx) by(sy), bx = 1 - s or s
                    basis, grads = [], []
                    for ni, nj in nodes:
                        bx, dbx = (1 - sx, -1.0) if ni == i else (sx, 1.0)
                        by, dby = (1 - sy, -1.0) if nj == j else (sy, 1.0)
                        basis.append(bx * by)
                        grads.append((dbx * by / h, bx * dby / h))
                    nu_q = sum(b * nu[nj, ni] for b, (ni, nj) in zip(basis, nodes))
                    w = h * h / 4  # Gauss weight 1 on [-1, 1]^2 times |det J|
                    for a, (ai, aj) in enumerate(nodes):
                        f[aj * n + ai] += w * source * basis[a]
                        for b, (bi, bj) in enumerate(nodes):
                            k[aj * n + ai, bj * n + bi] += w * nu_q * (grads[a][0] * grads[b][0] +
                                                                       grads[a][1] * grads[b][1])
    return k, f


def self_test(args):
    failures = []

    def check(ok, what):
        print(f"{'ok  ' if ok else 'FAIL'} {what}", flush=True)
        if not ok:
            failures.append(what)

    # Random123's known answers (the vectors tests/unit/test_rng.cpp checks).
    m = 0xFFFFFFFF
    for ctr, key, want in [((0, 0, 0, 0), (0, 0), (0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8)),
                           ((m, m, m, m), (m, m), (0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd)),
                           ((0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344), (0xa4093822, 0x299f31d0),
                            (0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1))]:
        got = tuple(int(w) for w in philox4x32_10(*ctr, *key))
        check(got == want, f"philox4x32-10 known answer {[hex(c) for c in ctr]}")
    u = random_uniform(7, 3, np.arange(1000, dtype=np.uint64))
    check(bool(np.all(u >= 0) and np.all(u < 1) and abs(u.mean() - 0.5) < 0.05), "random_uniform in [0, 1)")
    check(random_uniform(7, 3, 1 << 40) != random_uniform(7, 3, 0), "random_uniform uses the high index bits")

    # KL: roots solve the eigen equation, one per interval; eigenfunctions are orthonormal.
    problem = dict(DEFAULTS["problem"], pde="poisson2d", resolution=2001, kl_modes=6)
    s = KlSampler2D(problem, 0)
    l = problem["correlation_length"]
    f = lambda a: (l * l * a * a - 1) * math.sin(a) - 2 * l * a * math.cos(a)
    ok = all((k - 1) * math.pi < a <= k * math.pi and abs(f(a)) < 1e-9 for k, a in enumerate(s.roots, 1))
    check(ok, f"KL roots {np.round(s.roots, 6).tolist()} solve tan a = 2la/(l^2a^2-1), one per interval")
    x = np.arange(2001) / 2000
    gram = np.trapz(s.phi[:, None, :] * s.phi[None, :, :], x, axis=2)
    check(np.allclose(gram, np.eye(len(s.roots)), atol=1e-5), "KL eigenfunctions are orthonormal on [0, 1]")
    prods = [s.lam[i] * s.lam[j] for i, j in s.pairs]
    check(all(a >= b for a, b in zip(prods, prods[1:])),
          f"2D modes by decreasing lambda_i lambda_j: {s.pairs}")
    a, b = s.log_nu([5, 1 << 40]), s.log_nu([1 << 40, 5])
    check(np.array_equal(a[0], b[1]) and np.array_equal(a[1], b[0]), "a sample depends only on its index")

    # Loss against an independent dense assembly on a 5x5 grid: J = u^T K u / 2 - F^T u, dJ/du = K u - F.
    rng = np.random.default_rng(1)
    n, source = 5, 0.7
    nu = np.exp(rng.uniform(-1.5, 1.5, (n, n)))
    k, f = dense_q1_system(nu, source)
    uu = rng.uniform(-1, 1, (n, n))
    ut = torch.tensor(uu[None], dtype=torch.float64, requires_grad=True)
    loss = q1_energy(ut, torch.tensor(nu[None]), source, 1.0 / (n - 1)).sum()
    loss.backward()
    uv = uu.reshape(-1)
    want = 0.5 * uv @ k @ uv - f @ uv
    check(abs(loss.item() - want) <= 1e-12 * max(1.0, abs(want)),
          f"loss {loss.item():.15e} == u^T K u/2 - F^T u {want:.15e}")
    grad_err = np.abs(ut.grad.numpy().reshape(-1) - (k @ uv - f)).max()
    check(grad_err <= 1e-12 * np.abs(k @ uv - f).max(),
          f"gradient == K u - F (max difference {grad_err:.1e})")
    k32 = q1_energy(ut.detach().float(), torch.tensor(nu[None]).float(), source, 0.25).item()
    check(abs(k32 - want) <= 1e-5 * max(1.0, abs(want)), "the fp32 loss agrees to fp32 precision")
    kb, fb = assemble_q1(nu, source)
    check(np.allclose(kb.toarray(), k, rtol=1e-13, atol=1e-13) and np.allclose(fb, f, rtol=1e-13, atol=1e-15),
          "the sparse assembly of the reference solver equals the dense one")

    # The reference solution minimises the lifted loss: its gradient vanishes at the free nodes.
    u_ref, rel = reference_solution(np.log(nu), source, 1e-10)
    ut = torch.tensor(u_ref[None], requires_grad=True)
    q1_energy(ut, torch.tensor(nu[None]), source, 0.25).sum().backward()
    g = ut.grad.numpy()[0]
    dirichlet_exact = np.all(u_ref[:, 0] == 1) and np.all(u_ref[:, -1] == 0)
    check(rel <= 1e-10 and np.abs(g[:, 1:-1]).max() < 1e-12 and dirichlet_exact,
          f"reference solution: residual {rel:.1e}, free-node gradient {np.abs(g[:, 1:-1]).max():.1e}, "
          "Dirichlet values exact")

    # The U-Net of the quickstart deck has pdegen check's parameter count (481,745).
    net = UNet(DEFAULTS["network"])
    count = sum(w.numel() for w in net.parameters())
    check(count == 481745, f"U-Net depth 4 base 16 has {count:,} parameters (pdegen check: 481,745)")
    check(tuple(net(torch.zeros(2, 1, 64, 64)).shape) == (2, 1, 64, 64), "U-Net maps [2,1,64,64] to itself")
    variants = (({"norm": "batch"}, 482337),
                ({"downsample": "strided_conv", "upsample": "resize_conv"}, 557121))
    for change, want in variants:
        count = sum(w.numel() for w in UNet(dict(DEFAULTS["network"], **change)).parameters())
        check(count == want, f"U-Net with {change} has {count:,} parameters (pdegen check: {want:,})")

    residual_self_test(check, 2, dense_q1_system, q1_energy, 5)
    self_test_3d(check)

    if args.device == "cuda":
        use_device("cuda", args.tf32, args.cudnn_benchmark)
        gpu_self_test(check)

    print("self-test: " + ("all passed" if not failures else f"{len(failures)} FAILED"), flush=True)
    return 1 if failures else 0


def dense_q1_system_3d(nu, source):
    """Independent dense 3D assembly for the self-test: explicit loops over elements, Gauss points and
    node pairs, the trilinear basis written on the unit cell and its gradient in physical coordinates.
    nu is [n, n, n] indexed (z, y, x)."""
    n = nu.shape[0]
    h = 1.0 / (n - 1)
    k, f = np.zeros((n ** 3, n ** 3)), np.zeros(n ** 3)
    gauss_1d = (0.5 - 0.5 / math.sqrt(3), 0.5 + 0.5 / math.sqrt(3))  # on [0, 1]
    number = lambda i, j, l: (l * n + j) * n + i
    for c in range(n - 1):
        for j in range(n - 1):
            for i in range(n - 1):
                nodes = [(i + di, j + dj, c + dk) for dk in (0, 1) for dj in (0, 1) for di in (0, 1)]
                for sz in gauss_1d:
                    for sy in gauss_1d:
                        for sx in gauss_1d:
                            basis, grads = [], []
                            for ni, nj, nk in nodes:
                                bx, dbx = (1 - sx, -1.0) if ni == i else (sx, 1.0)
                                by, dby = (1 - sy, -1.0) if nj == j else (sy, 1.0)
                                bz, dbz = (1 - sz, -1.0) if nk == c else (sz, 1.0)
                                basis.append(bx * by * bz)
                                grads.append((dbx * by * bz / h, bx * dby * bz / h, bx * by * dbz / h))
                            nu_q = sum(b * nu[nk, nj, ni] for b, (ni, nj, nk) in zip(basis, nodes))
                            w = h ** 3 / 8  # Gauss weight 1 on [-1, 1]^3 times |det J|
                            for a, na in enumerate(nodes):
                                f[number(*na)] += w * source * basis[a]
                                for b, nb in enumerate(nodes):
                                    k[number(*na), number(*nb)] += w * nu_q * sum(
                                        ga * gb for ga, gb in zip(grads[a], grads[b]))
    return k, f


def residual_self_test(check, dims, dense_system, energy, n):
    """The residual loss ||K u - F||^2 over the free nodes against the dense K and F."""
    rng = np.random.default_rng(3)
    source = 0.4
    nu = np.exp(rng.uniform(-1, 1, (n,) * dims))
    k, f = dense_system(nu, source)
    uu = rng.uniform(-1, 1, (n,) * dims)
    mask, _ = dirichlet_lift(n, torch.float64, dims)
    got = residual_loss(energy, torch.tensor(uu[None]), torch.tensor(nu[None]), source, 1.0 / (n - 1),
                        mask).item()
    r = (k @ uu.reshape(-1) - f) * mask.numpy().reshape(-1)
    want = r @ r
    check(abs(got - want) <= 1e-12 * want, f"{dims}D residual loss {got:.12e} == ||K u - F||^2 over free nodes {want:.12e}")


def self_test_3d(check):
    # KL modes in 3D: decreasing products, ties by (i + j + k, i, j); the 2D rule on the k = 0 plane.
    problem = dict(DEFAULTS["problem"], pde="poisson3d", resolution=9, kl_modes=20)
    s3 = KlSampler3D(problem, 0)
    prods = [s3.lam[i] * s3.lam[j] * s3.lam[k] for i, j, k in s3.triples]
    decreasing = all(a >= b * (1 - 1e-12) for a, b in zip(prods, prods[1:]))
    ties_ok = all((sum(a), a[0], a[1]) < (sum(b), b[0], b[1]) for a, b, pa, pb in
                  zip(s3.triples, s3.triples[1:], prods, prods[1:]) if abs(pa - pb) <= 1e-12 * pa)
    check(decreasing and ties_ok and s3.triples[:4] == [(0, 0, 0), (0, 0, 1), (0, 1, 0), (1, 0, 0)],
          f"3D modes by decreasing lambda_i lambda_j lambda_k, ties by (i+j+k, i, j): {s3.triples[:10]}")
    problem2 = dict(problem, pde="poisson2d")
    pairs = KlSampler2D(problem2, 0).pairs
    planar = [(i, j) for i, j, k in s3.triples if k == 0]
    check(len(planar) > 3 and planar == pairs[:len(planar)],
          f"the 3D order restricted to k = 0 is the 2D order {planar}")
    a, b = s3.log_nu([5, 1 << 40]), s3.log_nu([1 << 40, 5])
    check(a.shape == (2, 9, 9, 9) and np.array_equal(a[0], b[1]) and np.array_equal(a[1], b[0]),
          "a 3D sample [Nz, Ny, Nx] depends only on its index")
    w = s3.omegas([7])[0]
    x = np.arange(9) / 8
    z, y, xx = 3, 5, 2
    want = sum(w[m] * math.sqrt(s3.lam[i] * s3.lam[j] * s3.lam[k]) * s3.phi[i][xx] * s3.phi[j][y] * s3.phi[k][z]
               for m, (i, j, k) in enumerate(s3.triples))
    check(abs(s3.log_nu([7])[0, z, y, xx] - want) <= 1e-6 * max(1, abs(want)),
          "3D log nu at node (x, y, z) = sum_k omega_k w_k phi_i(x) phi_j(y) phi_k(z), x the last index")

    # Energy by hand: u = x on the unit cube (one element, h = 1), nu = 1: J = 1/2 int |grad u|^2 = 1/2.
    xs = torch.tensor([0.0, 1.0], dtype=torch.float64)
    u = xs[None, None, None, :].expand(1, 2, 2, 2)
    e = q1_energy_3d(u, torch.ones(1, 2, 2, 2, dtype=torch.float64), 0.0, 1.0).item()
    check(abs(e - 0.5) < 1e-15, f"3D energy of u = x on the unit cube, nu = 1: {e} (1/2 by hand)")
    e = q1_energy_3d(torch.ones(1, 2, 2, 2, dtype=torch.float64), torch.ones(1, 2, 2, 2, dtype=torch.float64),
                     2.0, 1.0).item()
    check(abs(e + 2.0) < 1e-15, f"3D energy of u = 1, f = 2 on the unit cube: {e} (-f int u = -2 by hand)")

    # Loss and its autograd gradient against the dense assembly on a 4^3 grid.
    rng = np.random.default_rng(4)
    n, source = 4, 0.7
    nu = np.exp(rng.uniform(-1.5, 1.5, (n, n, n)))
    k, f = dense_q1_system_3d(nu, source)
    check(np.allclose(k, k.T, atol=1e-14) and abs(k.sum()) < 1e-12, "dense 3D K is symmetric with zero row sums")
    uu = rng.uniform(-1, 1, (n, n, n))
    ut = torch.tensor(uu[None], requires_grad=True)
    loss = q1_energy_3d(ut, torch.tensor(nu[None]), source, 1.0 / (n - 1)).sum()
    loss.backward()
    uv = uu.reshape(-1)
    want = 0.5 * uv @ k @ uv - f @ uv
    check(abs(loss.item() - want) <= 1e-12 * max(1.0, abs(want)),
          f"3D loss {loss.item():.15e} == u^T K u/2 - F^T u {want:.15e}")
    grad_err = np.abs(ut.grad.numpy().reshape(-1) - (k @ uv - f)).max()
    check(grad_err <= 1e-12 * np.abs(k @ uv - f).max(), f"3D gradient == K u - F (max difference {grad_err:.1e})")
    kb, fb = assemble_q1_3d(nu, source)
    check(np.allclose(kb.toarray(), k, rtol=1e-13, atol=1e-13) and np.allclose(fb, f, rtol=1e-13, atol=1e-15),
          "the sparse 3D assembly of the reference solver equals the dense one")
    residual_self_test(check, 3, dense_q1_system_3d, q1_energy_3d, 4)

    # The 3D reference solution minimises the lifted loss.
    n = 9
    nu = np.exp(KlSampler3D(dict(problem, kl_modes=8), 0).log_nu([3])[0].astype(np.float64))
    u_ref, rel = reference_solution_3d(np.log(nu), 0.3, 1e-10)
    ut = torch.tensor(u_ref[None], requires_grad=True)
    q1_energy_3d(ut, torch.tensor(nu[None]), 0.3, 1.0 / (n - 1)).sum().backward()
    g = np.abs(ut.grad.numpy()[0][..., 1:-1]).max()
    dirichlet_exact = np.all(u_ref[..., 0] == 1) and np.all(u_ref[..., -1] == 0)
    try:
        import pyamg  # noqa: F401
        how = "pyamg-preconditioned CG"
    except ImportError:
        how = "Jacobi-preconditioned CG (no pyamg)"
    check(rel <= 1e-10 and g < 1e-9 and dirichlet_exact,
          f"3D reference solution ({how}): residual {rel:.1e}, free-node gradient {g:.1e}, Dirichlet values exact")

    # The 3D U-Net of input_decks/poisson3d_32.yaml has pdegen check's parameter counts.
    net3 = dict(DEFAULTS["network"], base_channels=8)
    for change, want in (({}, 350457), ({"norm": "batch"}, 350753),
                         ({"downsample": "strided_conv", "upsample": "resize_conv"}, 412337)):
        count = sum(w.numel() for w in UNet(dict(net3, **change), dims=3).parameters())
        check(count == want, f"3D U-Net base 8{' ' + str(change) if change else ''} has {count:,} parameters (pdegen check: {want:,})")
    with torch.no_grad():
        shape = tuple(UNet(net3, dims=3)(torch.zeros(2, 1, 16, 16, 16)).shape)
    check(shape == (2, 1, 16, 16, 16), "3D U-Net maps [2,1,16,16,16] to itself")


def gpu_self_test(check):
    """With --device cuda: the loss and the U-Net on the GPU give the host's answers (fp32 math:
    use_device has switched TF32 off unless --tf32 was given)."""
    dev = torch.device("cuda")
    rng = np.random.default_rng(2)
    n = 33
    u = torch.tensor(rng.uniform(-1, 1, (2, n, n)), dtype=torch.float32)
    nu = torch.tensor(np.exp(rng.uniform(-1.5, 1.5, (2, n, n))), dtype=torch.float32)
    u_gpu = u.to(dev).requires_grad_()
    u_cpu = u.clone().requires_grad_()
    host = q1_energy(u_cpu, nu, 0.3, 1.0 / (n - 1))
    gpu = q1_energy(u_gpu, nu.to(dev), 0.3, 1.0 / (n - 1))
    host.sum().backward()
    gpu.sum().backward()
    err = (gpu.cpu() - host).abs().max().item() / host.abs().max().item()
    gerr = (u_gpu.grad.cpu() - u_cpu.grad).abs().max().item() / u_cpu.grad.abs().max().item()
    check(err < 1e-5 and gerr < 1e-5, f"loss and gradient on the GPU equal the host's (rel. {err:.1e}, {gerr:.1e})")
    torch.manual_seed(0)
    net = UNet(DEFAULTS["network"])
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        want = net(x)
        got = net.to(dev)(x.to(dev)).cpu()
    err = (got - want).abs().max().item() / want.abs().max().item()
    tol = 1e-2 if torch.backends.cudnn.allow_tf32 else 1e-4
    check(err < tol, f"U-Net forward on the GPU equals the host's (rel. {err:.1e} < {tol:.0e})")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("deck", nargs="?", help="pdegen deck (YAML)")
    ap.add_argument("overrides", nargs="*", help="key.path=value, as for pdegen")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    ap.add_argument("--steps", type=int, help="the same as training.steps=N")
    ap.add_argument("--eval-only-at-end", action="store_true", help="the same as evaluation.every=0")
    ap.add_argument("--json", help="also write the final JSON line to this file")
    # fp32 by default, as a PyTorch user would write it: fp64 temporaries cost ~20% more peak memory at
    # 1024^2 (2.2 vs 1.8 GiB) for no visible change in accuracy.
    ap.add_argument("--loss-dtype", choices=("float32", "float64"), default="float32",
                    help="dtype of the loss arithmetic (default float32; pdegen's is float64; sums are fp64)")
    ap.add_argument("--ref-cache", metavar="DIR", help="keep the reference solutions in DIR and reuse them")
    ap.add_argument("--self-test", action="store_true",
                    help="check sampler, loss and solver (with --device cuda: also loss and network on the GPU); "
                         "exit 1 on failure")
    ap.add_argument("--device", choices=("cpu", "cuda"), help="where to train (default: the deck's device, else cpu)")
    ap.add_argument("--tf32", action="store_true", help="let cuDNN and cuBLAS use TF32 (cuda; default off)")
    ap.add_argument("--no-cudnn-benchmark", dest="cudnn_benchmark", action="store_false",
                    help="take cuDNN's heuristic algorithms instead of timing the candidates (cuda)")
    ap.add_argument("--channels-last", action="store_true",
                    help="model and input in channels_last (2D) / channels_last_3d (3D) memory format")
    ap.add_argument("--bf16", action="store_true",
                    help="run the network under torch.autocast(bfloat16) (CPUs with AMX/AVX512-BF16, GPUs)")
    ap.add_argument("--compile", action="store_true", help="torch.compile the model (torch >= 2.0)")
    ap.add_argument("--best", action="store_true",
                    help="--channels-last --compile, and --bf16 on a GPU or a CPU with amx_bf16/avx512_bf16")
    ap.add_argument("--max-train-seconds", type=float, metavar="S",
                    help="stop once the training steps have taken S seconds (the schedule still spans training.steps)")
    args = ap.parse_intermixed_args()
    if args.self_test:
        torch.set_num_threads(args.threads)
        sys.exit(self_test(args))
    if not args.deck:
        ap.error("a deck is needed (or --self-test)")
    overrides = list(args.overrides) + ([f"training.steps={args.steps}"] if args.steps is not None else [])
    result = train(load_deck(args.deck, overrides), args)
    line = json.dumps(result)
    print(line, flush=True)
    if args.json:
        with open(args.json, "w") as f:
            f.write(line + "\n")


if __name__ == "__main__":
    main()
