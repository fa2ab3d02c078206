// The interior-point loop of alignjax.lp._ipm on the prior-rows-first order without a
// floor row, as one fused CPU kernel (XLA FFI custom call). Issue 14: at Y = 1,000,
// A = 4 the XLA program of one iteration is ~136 kernels bound by memory traffic; here
// an iteration is a few passes over L1/L2-resident arrays.
//
// The algorithm is the one in alignjax/lp.py (_ipm, prior_first=True, h=None): Mehrotra
// predictor-corrector (Wright 1997, Ch. 10) on  min c.v  s.t.  A v = b, v >= 0  with
//   v   = (x (A, Y), g (A, R) obedience slacks, s () floor slack)
//   A v = (sum_a x[a, y] (Y,), D x - g (A, R), -s ()),  b = (p, 0, f),  c = (-V, 0, 0)
// The normal equations eliminate the diagonal prior-row block first and solve the dense
// (A R + 1)-square Schur complement by a Jacobi-scaled Cholesky factorisation. The
// caller (Python) computes the starting point and, afterwards, the purification and
// the certificate (a duality gap in float64): nothing this kernel returns is trusted
// without that check.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <thread>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

constexpr double kStepFraction = 0.99;  // alignjax._ipm.STEP_FRACTION
constexpr double kImprove = 0.9;        // alignjax._ipm.IMPROVE
constexpr int kStallSteps = 10;         // alignjax.lp._STALL_STEPS
constexpr double kShortStep = 0.1;      // alignjax.lp._SHORT_STEP
constexpr double kRecenterSigma = 0.5;  // alignjax.lp._RECENTER_SIGMA
constexpr long kTile = 256;            // states per tile of the Schur complement's products

struct Game {
  long A, R, Y, AY, AR, n, m, K;
  const double *p, *V, *D;
  double f;
  double reg, tiny;
};

// out (m) = A v
void a_op(const Game& G, const double* v, double* out) {
  const double* x = v;
  const double* g = v + G.AY;
  for (long y = 0; y < G.Y; ++y) out[y] = 0.0;
  for (long a = 0; a < G.A; ++a) {
    const double* xa = x + a * G.Y;
#pragma omp simd
    for (long y = 0; y < G.Y; ++y) out[y] += xa[y];
  }
  for (long a = 0; a < G.A; ++a)
    for (long r = 0; r < G.R; ++r) {
      const double* Dr = G.D + (a * G.R + r) * G.Y;
      const double* xa = x + a * G.Y;
      double acc = 0.0;
#pragma omp simd reduction(+ : acc)
      for (long y = 0; y < G.Y; ++y) acc += Dr[y] * xa[y];
      out[G.Y + a * G.R + r] = acc - g[a * G.R + r];
    }
  out[G.m - 1] = -v[G.n - 1];
}

// t (A Y) = D^T lG: t[a, y] = sum_r D[a, r, y] lG[a, r]
void dt_op(const Game& G, const double* lG, double* t) {
  for (long a = 0; a < G.A; ++a) {
    double* ta = t + a * G.Y;
    for (long y = 0; y < G.Y; ++y) ta[y] = 0.0;
    for (long r = 0; r < G.R; ++r) {
      const double* Dr = G.D + (a * G.R + r) * G.Y;
      const double l = lG[a * G.R + r];
#pragma omp simd
      for (long y = 0; y < G.Y; ++y) ta[y] += Dr[y] * l;
    }
  }
}

// out (n) = A^T lam
void at_op(const Game& G, const double* lam, double* out) {
  dt_op(G, lam + G.Y, out);
  for (long a = 0; a < G.A; ++a) {
    double* oa = out + a * G.Y;
#pragma omp simd
    for (long y = 0; y < G.Y; ++y) oa[y] += lam[y];
  }
  for (long i = 0; i < G.AR; ++i) out[G.AY + i] = -lam[G.Y + i];
  out[G.n - 1] = -lam[G.m - 1];
}

struct Factor {
  const double* tx = nullptr;            // theta's x part (A, Y)
  std::vector<double> inv_s, L, d, S;    // L: K x K Cholesky factor of the scaled Schur complement
  std::vector<double> rest, Gt, Ht, Kt;
};

void factor(const Game& G, const double* theta, Factor& F) {
  const long A = G.A, Y = G.Y, R = G.R, K = G.K;
  F.tx = theta;
  const double* tx = theta;
  double* inv_s = F.inv_s.data();
  for (long y = 0; y < Y; ++y) inv_s[y] = 0.0;
  for (long a = 0; a < A; ++a) {
    const double* ta = tx + a * Y;
#pragma omp simd
    for (long y = 0; y < Y; ++y) inv_s[y] += ta[y];
  }
#pragma omp simd
  for (long y = 0; y < Y; ++y) inv_s[y] = inv_s[y] > 0 ? 1.0 / inv_s[y] : 0.0;
  // S_GG = sum_y Phi_y W_y Phi_y^T with W_y = diag(t) - t t^T / s, entries written
  // without cancellation: off the diagonal blocks -sum_y D_i t_a D_j t_b / s, on them
  // sum_y D_i D_j t_a rest_a / s with rest_a = sum_{b != a} t_b summed without a
  // subtraction (i = (a, r), j = (b, q)). As dot products of H_i = D_i t_a / s with
  // G_j = D_j t_b (off) or K_j = D_j rest_a (on), over tiles of kTile states so that
  // a tile's H, G and K stay in the L1 cache.
  double* S = F.S.data();
  for (long i = 0; i < K * K; ++i) S[i] = 0.0;
  double* rest = F.rest.data();
  const long AR = G.AR;
  for (long y0 = 0; y0 < Y; y0 += kTile) {
    const long T = std::min(kTile, Y - y0);
    const double* is = inv_s + y0;
    for (long a = 0; a < A; ++a) {
      for (long y = 0; y < T; ++y) rest[y] = 0.0;
      for (long b = 0; b < A; ++b) {
        if (b == a) continue;
        const double* tb = tx + b * Y + y0;
#pragma omp simd
        for (long y = 0; y < T; ++y) rest[y] += tb[y];
      }
      const double* ta = tx + a * Y + y0;
      for (long r = 0; r < R; ++r) {
        const double* Dr = G.D + (a * R + r) * Y + y0;
        double* Gr = &F.Gt[(a * R + r) * kTile];
        double* Hr = &F.Ht[(a * R + r) * kTile];
        double* Kr = &F.Kt[(a * R + r) * kTile];
#pragma omp simd
        for (long y = 0; y < T; ++y) {
          Gr[y] = Dr[y] * ta[y];
          Hr[y] = Gr[y] * is[y];
          Kr[y] = Dr[y] * rest[y];
        }
      }
    }
    for (long i = 0; i < AR; ++i) {
      const double* Hi = &F.Ht[i * kTile];
      const long bi = i / R;
      long j = i;
      // four dot products at a time: independent accumulators, one load of H_i
      for (; j + 4 <= AR; j += 4) {
        const double* c[4];
        for (int u = 0; u < 4; ++u) c[u] = ((j + u) / R == bi) ? &F.Kt[(j + u) * kTile] : &F.Gt[(j + u) * kTile];
        double a0 = 0, a1 = 0, a2 = 0, a3 = 0;
#pragma omp simd reduction(+ : a0, a1, a2, a3)
        for (long y = 0; y < T; ++y) {
          a0 += Hi[y] * c[0][y];
          a1 += Hi[y] * c[1][y];
          a2 += Hi[y] * c[2][y];
          a3 += Hi[y] * c[3][y];
        }
        const double acc[4] = {a0, a1, a2, a3};
        for (int u = 0; u < 4; ++u) S[i * K + j + u] += ((j + u) / R == bi) ? acc[u] : -acc[u];
      }
      for (; j < AR; ++j) {
        const bool same = j / R == bi;
        const double* cj = same ? &F.Kt[j * kTile] : &F.Gt[j * kTile];
        double acc = 0.0;
#pragma omp simd reduction(+ : acc)
        for (long y = 0; y < T; ++y) acc += Hi[y] * cj[y];
        S[i * K + j] += same ? acc : -acc;
      }
    }
  }
  for (long i = 0; i < G.AR; ++i)
    for (long j = 0; j < i; ++j) S[i * K + j] = S[j * K + i];
  for (long i = 0; i < G.AR; ++i) S[i * K + i] += theta[G.AY + i];
  S[(K - 1) * K + (K - 1)] = theta[G.n - 1];
  for (long i = 0; i < K; ++i) S[i * K + i] += G.reg * std::fabs(S[i * K + i]) + G.tiny;
  // Jacobi scaling to a unit diagonal, then Cholesky (pivots clamped at tiny, as the
  // sweeps of alignjax._linalg.spd_inverse)
  for (long i = 0; i < K; ++i) F.d[i] = std::sqrt(std::max(S[i * K + i], G.tiny));
  double* L = F.L.data();
  for (long i = 0; i < K * K; ++i) L[i] = 0.0;
  for (long i = 0; i < K; ++i)
    for (long j = 0; j <= i; ++j) {
      double acc = S[i * K + j] / (F.d[i] * F.d[j]);
      for (long k = 0; k < j; ++k) acc -= L[i * K + k] * L[j * K + k];
      if (i == j)
        L[i * K + i] = std::sqrt(std::max(acc, G.tiny));
      else
        L[i * K + j] = acc / L[j * K + j];
    }
}

// dlam (m) for the normal equations A Theta A^T dlam = rhs; t (A Y) = D^T dlam_G
void normal_solve(const Game& G, const Factor& F, const double* rhs, double* dlam, double* t,
                  std::vector<double>& w, std::vector<double>& z) {
  const long A = G.A, Y = G.Y, R = G.R, K = G.K;
  const double* rE = rhs;
  const double* inv_s = F.inv_s.data();
  // r_G = rG - D (tx w), w = rE / s
  for (long a = 0; a < A; ++a) {
    const double* txa = F.tx + a * Y;
    double* wa = &w[a * Y];
#pragma omp simd
    for (long y = 0; y < Y; ++y) wa[y] = txa[y] * rE[y] * inv_s[y];
  }
  for (long a = 0; a < A; ++a)
    for (long r = 0; r < R; ++r) {
      const double* Dr = G.D + (a * R + r) * Y;
      const double* wa = &w[a * Y];
      double acc = 0.0;
#pragma omp simd reduction(+ : acc)
      for (long y = 0; y < Y; ++y) acc += Dr[y] * wa[y];
      z[a * R + r] = rhs[Y + a * R + r] - acc;
    }
  z[K - 1] = rhs[G.m - 1];
  // scaled Cholesky solve
  for (long i = 0; i < K; ++i) z[i] /= F.d[i];
  for (long i = 0; i < K; ++i) {
    double acc = z[i];
    for (long k = 0; k < i; ++k) acc -= F.L[i * K + k] * z[k];
    z[i] = acc / F.L[i * K + i];
  }
  for (long i = K - 1; i >= 0; --i) {
    double acc = z[i];
    for (long k = i + 1; k < K; ++k) acc -= F.L[k * K + i] * z[k];
    z[i] = acc / F.L[i * K + i];
  }
  for (long i = 0; i < K; ++i) z[i] /= F.d[i];
  for (long i = 0; i < G.AR; ++i) dlam[Y + i] = z[i];
  dlam[G.m - 1] = z[K - 1];
  dt_op(G, dlam + Y, t);
#pragma omp simd
  for (long y = 0; y < Y; ++y) dlam[y] = rE[y];
  for (long a = 0; a < A; ++a) {
    const double* txa = F.tx + a * Y;
    const double* ta = t + a * Y;
#pragma omp simd
    for (long y = 0; y < Y; ++y) dlam[y] -= txa[y] * ta[y];
  }
#pragma omp simd
  for (long y = 0; y < Y; ++y) dlam[y] *= inv_s[y];
}

// The largest alpha in [0, 1] with v + alpha dv >= 0, from iv = 1 / v (v > 0):
// 1 / max_i (-dv[i] iv[i]), a vectorised maximum instead of a division per entry.
double max_step(const double* iv, const double* dv, long n) {
  double worst = 0.0;
#pragma omp simd reduction(max : worst)
  for (long i = 0; i < n; ++i) {
    const double r = -dv[i] * iv[i];
    worst = worst > r ? worst : r;
  }
  return worst > 1.0 ? 1.0 / worst : 1.0;
}

struct Work {
  std::vector<double> theta, inv_z, inv_v, q, rhs, tmp, t, w, z;
  std::vector<double> rp, rd, dv_a, dz_a, dlam_a, dv, dz, dlam, rc, nv, nl, nz, nrp, nrd, bv, bl, bz;
  Factor F;
  // sized for G; grows only, so a thread's workspace is allocated once (page faults of
  // fresh allocations cost more than an iteration at Y = 1,000)
  void fit(const Game& G) {
    for (auto* v : {&theta, &inv_z, &inv_v, &q, &tmp, &rd, &dv_a, &dz_a, &dv, &dz, &rc, &nv, &nz, &nrd, &bv, &bz})
      if ((long)v->size() < G.n) v->resize(G.n);
    for (auto* v : {&rhs, &tmp, &rp, &dlam_a, &dlam, &nl, &nrp, &bl})
      if ((long)v->size() < G.m) v->resize(G.m);
    for (auto* v : {&t, &w}) if ((long)v->size() < G.AY) v->resize(G.AY);
    if ((long)F.inv_s.size() < G.Y) F.inv_s.resize(G.Y);
    if ((long)F.rest.size() < kTile) F.rest.resize(kTile);
    for (auto* v : {&F.Gt, &F.Ht, &F.Kt}) if ((long)v->size() < G.AR * kTile) v->resize(G.AR * kTile);
    for (auto* v : {&F.L, &F.S}) if ((long)v->size() < G.K * G.K) v->resize(G.K * G.K);
    for (auto* v : {&z, &F.d}) if ((long)v->size() < G.K) v->resize(G.K);
  }
};

// Newton direction for complementarity target rc
void newton(const Game& G, Work& W, const double* z, const double* rp, const double* rd, const double* rc,
            double* dv, double* dlam, double* dz) {
  const long n = G.n, m = G.m, Y = G.Y, A = G.A;
  double* q = W.q.data();
  const double* th = W.theta.data();
  const double* iz = W.inv_z.data();
#pragma omp simd
  for (long i = 0; i < n; ++i) q[i] = th[i] * rd[i] - rc[i] * iz[i];
  a_op(G, q, W.tmp.data());
  for (long i = 0; i < m; ++i) W.rhs[i] = rp[i] + W.tmp[i];
  normal_solve(G, W.F, W.rhs.data(), dlam, W.t.data(), W.w, W.z);
  for (long a = 0; a < A; ++a)
    for (long y = 0; y < Y; ++y) dz[a * Y + y] = rd[a * Y + y] - (dlam[y] + W.t[a * Y + y]);
  for (long i = 0; i < G.AR; ++i) dz[G.AY + i] = rd[G.AY + i] + dlam[Y + i];
  dz[n - 1] = rd[n - 1] + dlam[m - 1];
#pragma omp simd
  for (long i = 0; i < n; ++i) dv[i] = rc[i] * iz[i] - th[i] * dz[i];
}

double measure(const Game& G, Work& W, const double* v, const double* lam, const double* z, double* rp,
               double* rd, double b_norm, double c_norm) {
  const long n = G.n, m = G.m, Y = G.Y;
  a_op(G, v, rp);
  double rp_max = 0.0;
  for (long y = 0; y < Y; ++y) {
    rp[y] = G.p[y] - rp[y];
    rp_max = std::max(rp_max, std::fabs(rp[y]));
  }
  for (long i = Y; i < m - 1; ++i) {
    rp[i] = -rp[i];
    rp_max = std::max(rp_max, std::fabs(rp[i]));
  }
  rp[m - 1] = G.f - rp[m - 1];
  rp_max = std::max(rp_max, std::fabs(rp[m - 1]));
  at_op(G, lam, rd);
  double rd_max = 0.0, pobj = 0.0;
  for (long i = 0; i < n; ++i) {
    const double c = i < G.AY ? -G.V[i] : 0.0;
    rd[i] = c - rd[i] - z[i];
    rd_max = std::max(rd_max, std::fabs(rd[i]));
    pobj += c * v[i];
  }
  double dobj = 0.0;
  for (long y = 0; y < Y; ++y) dobj += G.p[y] * lam[y];
  dobj += G.f * lam[m - 1];
  const double gap = std::fabs(pobj - dobj) / (1.0 + std::fabs(pobj));
  double merit = std::max(std::max(rp_max / b_norm, rd_max / c_norm), gap);
  if (std::isnan(rp_max) || std::isnan(rd_max) || std::isnan(gap)) merit = std::numeric_limits<double>::quiet_NaN();
  return merit;
}

double dot(const double* a, const double* b, long n) {
  double acc = 0.0;
  for (long i = 0; i < n; ++i) acc += a[i] * b[i];
  return acc;
}

// One game: the loop of alignjax.lp._ipm from (v, lam, z); v, lam, z are overwritten by
// the best iterate. Returns the iteration count and the best merit.
void run_game(const Game& G, double* v, double* lam, double* z, bool skip, double tol, long max_steps,
              int32_t* steps_out, double* merit_out) {
  const long n = G.n, m = G.m;
  double b_norm = std::fabs(G.f), v_max = 0.0;
  for (long y = 0; y < G.Y; ++y) b_norm = std::max(b_norm, std::fabs(G.p[y]));
  b_norm += 1.0;
  for (long i = 0; i < G.AY; ++i) v_max = std::max(v_max, std::fabs(G.V[i]));
  const double c_norm = 1.0 + v_max;
  static thread_local Work W;
  W.fit(G);
  auto &rp = W.rp, &rd = W.rd, &dv_a = W.dv_a, &dz_a = W.dz_a, &dlam_a = W.dlam_a, &dv = W.dv, &dz = W.dz,
       &dlam = W.dlam, &rc = W.rc, &nv = W.nv, &nl = W.nl, &nz = W.nz, &nrp = W.nrp, &nrd = W.nrd, &bv = W.bv,
       &bl = W.bl, &bz = W.bz;
  std::copy(v, v + n, bv.begin()); std::copy(lam, lam + m, bl.begin()); std::copy(z, z + n, bz.begin());
  double best_merit = measure(G, W, v, lam, z, rp.data(), rd.data(), b_norm, c_norm);
  long k = 0, k_best = 0;
  bool failed = false, shrt = false;
  while (true) {
    const double mu = dot(v, z, n) / n;
    const bool stall = (k - k_best > kStallSteps) || ((mu < 1e-4 * tol) && (k - k_best > 1));
    // (best_merit >= tol) is false for NaN, as in the XLA loop
    if (!(best_merit >= tol) || failed || stall || k >= max_steps || skip) break;
    double* th = W.theta.data();
    double* iz = W.inv_z.data();
    double* iv = W.inv_v.data();
#pragma omp simd
    for (long i = 0; i < n; ++i) {
      iz[i] = 1.0 / z[i];
      iv[i] = 1.0 / v[i];
      th[i] = v[i] * iz[i];
    }
    factor(G, th, W.F);
    for (long i = 0; i < n; ++i) rc[i] = -v[i] * z[i];
    newton(G, W, z, rp.data(), rd.data(), rc.data(), dv_a.data(), dlam_a.data(), dz_a.data());
    double ap = max_step(iv, dv_a.data(), n), ad = max_step(iz, dz_a.data(), n);
    double mu_aff = 0.0;
    for (long i = 0; i < n; ++i) mu_aff += (v[i] + ap * dv_a[i]) * (z[i] + ad * dz_a[i]);
    mu_aff /= n;
    double sigma = std::pow(mu_aff / std::max(mu, G.tiny), 3.0);
    sigma = std::min(std::max(sigma, 0.0), 1.0);
    if (std::isnan(mu_aff / std::max(mu, G.tiny))) sigma = std::numeric_limits<double>::quiet_NaN();
    if (shrt) sigma = std::max(sigma, kRecenterSigma);
    const double keep = shrt ? 0.0 : 1.0;
    for (long i = 0; i < n; ++i) rc[i] = sigma * mu - v[i] * z[i] - keep * dv_a[i] * dz_a[i];
    newton(G, W, z, rp.data(), rd.data(), rc.data(), dv.data(), dlam.data(), dz.data());
    ap = kStepFraction * max_step(iv, dv.data(), n);
    ad = kStepFraction * max_step(iz, dz.data(), n);
    for (long i = 0; i < n; ++i) { nv[i] = v[i] + ap * dv[i]; nz[i] = z[i] + ad * dz[i]; }
    for (long i = 0; i < m; ++i) nl[i] = lam[i] + ad * dlam[i];
    double mm = measure(G, W, nv.data(), nl.data(), nz.data(), nrp.data(), nrd.data(), b_norm, c_norm);
    const bool finite = std::isfinite(mm);
    if (finite) {
      std::copy(nv.begin(), nv.end(), v); std::copy(nl.begin(), nl.end(), lam); std::copy(nz.begin(), nz.end(), z);
      std::copy(nrp.begin(), nrp.begin() + m, rp.begin()); std::copy(nrd.begin(), nrd.begin() + n, rd.begin());
    } else {
      mm = std::numeric_limits<double>::infinity();
    }
    if (mm < best_merit) {
      std::copy(v, v + n, bv.begin()); std::copy(lam, lam + m, bl.begin()); std::copy(z, z + n, bz.begin());
    }
    if (mm < kImprove * best_merit) k_best = k + 1;
    best_merit = std::min(mm, best_merit);
    k += 1;
    failed = !finite;
    shrt = std::min(ap, ad) < kShortStep;
  }
  std::copy(bv.begin(), bv.begin() + n, v); std::copy(bl.begin(), bl.begin() + m, lam);
  std::copy(bz.begin(), bz.begin() + n, z);
  *steps_out = static_cast<int32_t>(k);
  *merit_out = best_merit;
}

using B64 = ffi::Buffer<ffi::F64>;
using R64 = ffi::ResultBuffer<ffi::F64>;

ffi::Error PriorIpmImpl(B64 p, B64 V, B64 D, B64 f, B64 vx, B64 vg, B64 vs, B64 lE, B64 lG, B64 ls, B64 zx,
                        B64 zg, B64 zs, B64 skip, double tol, int64_t max_steps, int64_t threads, R64 ovx,
                        R64 ovg, R64 ovs, R64 olE, R64 olG, R64 ols, R64 ozx, R64 ozg, R64 ozs,
                        ffi::ResultBuffer<ffi::S32> osteps, R64 omerit) {
  auto vd = V.dimensions(), dd = D.dimensions();
  if (vd.size() < 2 || dd.size() < 3) return ffi::Error::InvalidArgument("prior_ipm: bad ranks");
  const long A = vd[vd.size() - 2], Y = vd[vd.size() - 1], R = dd[dd.size() - 2];
  const long batch = static_cast<long>(p.element_count()) / Y;
  const long AY = A * Y, AR = A * R, n = AY + AR + 1, m = Y + AR + 1;
  auto one = [&](long b) {
    Game G{A, R, Y, AY, AR, n, m, AR + 1, p.typed_data() + b * Y, V.typed_data() + b * AY,
           D.typed_data() + b * AR * Y, f.typed_data()[b], 1e2 * std::numeric_limits<double>::epsilon(),
           std::numeric_limits<double>::min()};
    static thread_local std::vector<double> v, lam, z;
    v.resize(n); lam.resize(m); z.resize(n);
    std::copy(vx.typed_data() + b * AY, vx.typed_data() + (b + 1) * AY, v.begin());
    std::copy(vg.typed_data() + b * AR, vg.typed_data() + (b + 1) * AR, v.begin() + AY);
    v[n - 1] = vs.typed_data()[b];
    std::copy(lE.typed_data() + b * Y, lE.typed_data() + (b + 1) * Y, lam.begin());
    std::copy(lG.typed_data() + b * AR, lG.typed_data() + (b + 1) * AR, lam.begin() + Y);
    lam[m - 1] = ls.typed_data()[b];
    std::copy(zx.typed_data() + b * AY, zx.typed_data() + (b + 1) * AY, z.begin());
    std::copy(zg.typed_data() + b * AR, zg.typed_data() + (b + 1) * AR, z.begin() + AY);
    z[n - 1] = zs.typed_data()[b];
    run_game(G, v.data(), lam.data(), z.data(), skip.typed_data()[b] != 0.0, tol, max_steps,
             osteps->typed_data() + b, omerit->typed_data() + b);
    std::copy(v.begin(), v.begin() + AY, ovx->typed_data() + b * AY);
    std::copy(v.begin() + AY, v.begin() + AY + AR, ovg->typed_data() + b * AR);
    ovs->typed_data()[b] = v[n - 1];
    std::copy(lam.begin(), lam.begin() + Y, olE->typed_data() + b * Y);
    std::copy(lam.begin() + Y, lam.begin() + Y + AR, olG->typed_data() + b * AR);
    ols->typed_data()[b] = lam[m - 1];
    std::copy(z.begin(), z.begin() + AY, ozx->typed_data() + b * AY);
    std::copy(z.begin() + AY, z.begin() + AY + AR, ozg->typed_data() + b * AR);
    ozs->typed_data()[b] = z[n - 1];
  };
  const long nt = std::max<long>(1, std::min<long>(threads, batch));
  if (nt == 1) {
    for (long b = 0; b < batch; ++b) one(b);
  } else {
    std::vector<std::thread> pool;
    for (long t = 0; t < nt; ++t)
      pool.emplace_back([&, t] { for (long b = t; b < batch; b += nt) one(b); });
    for (auto& th : pool) th.join();
  }
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(AlignjaxPriorIpm, PriorIpmImpl,
                              ffi::Ffi::Bind()
                                  .Arg<B64>().Arg<B64>().Arg<B64>().Arg<B64>()
                                  .Arg<B64>().Arg<B64>().Arg<B64>()
                                  .Arg<B64>().Arg<B64>().Arg<B64>()
                                  .Arg<B64>().Arg<B64>().Arg<B64>()
                                  .Arg<B64>()
                                  .Attr<double>("tol")
                                  .Attr<int64_t>("max_steps")
                                  .Attr<int64_t>("threads")
                                  .Ret<B64>().Ret<B64>().Ret<B64>()
                                  .Ret<B64>().Ret<B64>().Ret<B64>()
                                  .Ret<B64>().Ret<B64>().Ret<B64>()
                                  .Ret<ffi::Buffer<ffi::S32>>()
                                  .Ret<B64>());
