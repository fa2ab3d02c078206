// The interior-point method of alignjax.lp._ipm_xla on the prior-rows-first order
// without a floor row, as one fused CPU kernel (XLA FFI custom call; issue 14, round 6).
// At Y = 1,000, A = 4 the XLA program of one iteration is ~136 small kernels bound by
// memory traffic; here an iteration is four sweeps over tiles of kTile states.
//
// The algorithm is the one in alignjax/lp.py (_ipm_xla, prior_first=True, h=None), step
// for step: Mehrotra's predictor-corrector (Wright 1997, Ch. 10) from Mehrotra's starting
// point on  min c.v  s.t.  A v = b, v >= 0  with
//   v   = (x (A, Y), g (A, R) obedience slacks, s () floor slack)
//   A v = (sum_a x[a, y] (Y,), D x - g (A, R), -s ()),  b = (p, 0, f),  c = (-V, 0, 0),
// the best iterate (lowest merit) kept, and the purification at the end. The normal
// equations eliminate the diagonal prior-row block first and solve the dense
// (A R + 1)-square Schur complement by a Jacobi-scaled Cholesky factorisation. The
// caller (alignjax.lp) computes the certificate (dual bound, violations, status) from
// what this returns, in float64: nothing here is trusted without that check.
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
constexpr long kTile = 128;            // states per tile of the Schur complement's products

struct Game {
  long A, R, Y, AY, AR, n, m, K;
  const double *p, *V, *D;
  double f;
  double reg, tiny;
};

// D^T l on one action's rows over a tile: out[y] = sum_r D[a, r, y0 + y] l[a R + r]
// (one pass for R <= 3)
inline void dt_tile(const Game& G, long a, long y0, long T, const double* l, double* out) {
  const long R = G.R;
  const double* D0 = G.D + (a * R) * G.Y + y0;
  const double* lr = l + a * R;
  if (R == 3) {
    const double *D1 = D0 + G.Y, *D2 = D1 + G.Y, c0 = lr[0], c1 = lr[1], c2 = lr[2];
#pragma omp simd
    for (long y = 0; y < T; ++y) out[y] = D0[y] * c0 + D1[y] * c1 + D2[y] * c2;
    return;
  }
  if (R == 2) {
    const double *D1 = D0 + G.Y, c0 = lr[0], c1 = lr[1];
#pragma omp simd
    for (long y = 0; y < T; ++y) out[y] = D0[y] * c0 + D1[y] * c1;
    return;
  }
  // R > 3: four rows per pass
  for (long y = 0; y < T; ++y) out[y] = 0.0;
  long r = 0;
  for (; r + 4 <= R; r += 4) {
    const double *E0 = D0 + r * G.Y, *E1 = E0 + G.Y, *E2 = E1 + G.Y, *E3 = E2 + G.Y;
    const double c0 = lr[r], c1 = lr[r + 1], c2 = lr[r + 2], c3 = lr[r + 3];
#pragma omp simd
    for (long y = 0; y < T; ++y) out[y] += E0[y] * c0 + E1[y] * c1 + E2[y] * c2 + E3[y] * c3;
  }
  for (; r < R; ++r) {
    const double* Dr = D0 + r * G.Y;
    const double c = lr[r];
#pragma omp simd
    for (long y = 0; y < T; ++y) out[y] += Dr[y] * c;
  }
}

// acc[a R + r] += sum_y D[a, r, y0 + y] w[y] (one pass for R <= 3)
inline void d_tile(const Game& G, long a, long y0, long T, const double* w, double* acc) {
  const long R = G.R;
  const double* D0 = G.D + (a * R) * G.Y + y0;
  double* ar = acc + a * R;
  if (R == 3) {
    const double *D1 = D0 + G.Y, *D2 = D1 + G.Y;
    double s0 = 0.0, s1 = 0.0, s2 = 0.0;
#pragma omp simd reduction(+ : s0, s1, s2)
    for (long y = 0; y < T; ++y) {
      s0 += D0[y] * w[y];
      s1 += D1[y] * w[y];
      s2 += D2[y] * w[y];
    }
    ar[0] += s0; ar[1] += s1; ar[2] += s2;
    return;
  }
  if (R == 2) {
    const double* D1 = D0 + G.Y;
    double s0 = 0.0, s1 = 0.0;
#pragma omp simd reduction(+ : s0, s1)
    for (long y = 0; y < T; ++y) {
      s0 += D0[y] * w[y];
      s1 += D1[y] * w[y];
    }
    ar[0] += s0; ar[1] += s1;
    return;
  }
  // R > 3: four rows per pass
  long r = 0;
  for (; r + 4 <= R; r += 4) {
    const double *E0 = D0 + r * G.Y, *E1 = E0 + G.Y, *E2 = E1 + G.Y, *E3 = E2 + G.Y;
    double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
#pragma omp simd reduction(+ : s0, s1, s2, s3)
    for (long y = 0; y < T; ++y) {
      s0 += E0[y] * w[y];
      s1 += E1[y] * w[y];
      s2 += E2[y] * w[y];
      s3 += E3[y] * w[y];
    }
    ar[r] += s0; ar[r + 1] += s1; ar[r + 2] += s2; ar[r + 3] += s3;
  }
  for (; r < R; ++r) {
    const double* Dr = D0 + r * G.Y;
    double s = 0.0;
#pragma omp simd reduction(+ : s)
    for (long y = 0; y < T; ++y) s += Dr[y] * w[y];
    ar[r] += s;
  }
}

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
  double* acc = out + G.Y;
  for (long i = 0; i < G.AR; ++i) acc[i] = 0.0;
  for (long y0 = 0; y0 < G.Y; y0 += kTile)
    for (long a = 0; a < G.A; ++a) d_tile(G, a, y0, std::min(kTile, G.Y - y0), x + a * G.Y + y0, acc);
  for (long i = 0; i < G.AR; ++i) acc[i] -= g[i];
  out[G.m - 1] = -v[G.n - 1];
}

// t (A Y) = D^T lG: t[a, y] = sum_r D[a, r, y] lG[a, r]
void dt_op(const Game& G, const double* lG, double* t) {
  for (long a = 0; a < G.A; ++a)
    for (long y0 = 0; y0 < G.Y; y0 += kTile) dt_tile(G, a, y0, std::min(kTile, G.Y - y0), lG, t + a * G.Y + y0);
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

// S_GG = sum_y Phi_y W_y Phi_y^T with W_y = diag(t) - t t^T / s, entries written
// without cancellation: off the diagonal blocks -sum_y D_i t_a D_j t_b / s, on them
// sum_y D_i D_j t_a rest_a / s with rest_a = sum_{b != a} t_b summed without a
// subtraction (i = (a, r), j = (b, q)), accumulated into S (upper triangle, then
// mirrored). Any R: as dot products of H_i = D_i t_a / s with G_j = D_j t_b (off) or
// K_j = D_j rest_a (on), over tiles of kTile states kept in the L1 cache.
void schur_tile_general(const Game& G, Factor& F, const double* tx, const double* is, long y0, long T, double* S) {
  const long A = G.A, Y = G.Y, R = G.R, K = G.K, AR = G.AR;
  double* rest = F.rest.data();
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

// acc[r][q] = sum_y Da[r][y] w[y] Db[q][y], R = 1..3 with named accumulators (so that
// the compiler vectorises over y with R^2 independent chains)
template <int RR>
inline void pair_dots(const double* const* Da, const double* const* Db, const double* w, long T,
                      double (*acc)[RR]);

template <>
inline void pair_dots<1>(const double* const* Da, const double* const* Db, const double* w, long T,
                         double (*acc)[1]) {
  double a00 = 0;
  const double *d0 = Da[0], *e0 = Db[0];
#pragma omp simd reduction(+ : a00)
  for (long y = 0; y < T; ++y) a00 += d0[y] * w[y] * e0[y];
  acc[0][0] = a00;
}

template <>
inline void pair_dots<2>(const double* const* Da, const double* const* Db, const double* w, long T,
                         double (*acc)[2]) {
  double a00 = 0, a01 = 0, a10 = 0, a11 = 0;
  const double *d0 = Da[0], *d1 = Da[1], *e0 = Db[0], *e1 = Db[1];
#pragma omp simd reduction(+ : a00, a01, a10, a11)
  for (long y = 0; y < T; ++y) {
    const double x0 = d0[y] * w[y], x1 = d1[y] * w[y];
    a00 += x0 * e0[y]; a01 += x0 * e1[y];
    a10 += x1 * e0[y]; a11 += x1 * e1[y];
  }
  acc[0][0] = a00; acc[0][1] = a01; acc[1][0] = a10; acc[1][1] = a11;
}

template <>
inline void pair_dots<3>(const double* const* Da, const double* const* Db, const double* w, long T,
                         double (*acc)[3]) {
  double a00 = 0, a01 = 0, a02 = 0, a10 = 0, a11 = 0, a12 = 0, a20 = 0, a21 = 0, a22 = 0;
  const double *d0 = Da[0], *d1 = Da[1], *d2 = Da[2], *e0 = Db[0], *e1 = Db[1], *e2 = Db[2];
#pragma omp simd reduction(+ : a00, a01, a02, a10, a11, a12, a20, a21, a22)
  for (long y = 0; y < T; ++y) {
    const double x0 = d0[y] * w[y], x1 = d1[y] * w[y], x2 = d2[y] * w[y];
    const double f0 = e0[y], f1 = e1[y], f2 = e2[y];
    a00 += x0 * f0; a01 += x0 * f1; a02 += x0 * f2;
    a10 += x1 * f0; a11 += x1 * f1; a12 += x1 * f2;
    a20 += x2 * f0; a21 += x2 * f1; a22 += x2 * f2;
  }
  acc[0][0] = a00; acc[0][1] = a01; acc[0][2] = a02;
  acc[1][0] = a10; acc[1][1] = a11; acc[1][2] = a12;
  acc[2][0] = a20; acc[2][1] = a21; acc[2][2] = a22;
}

// The same for small R (the persuasion LP up to A = 4): per pair of actions a <= b one
// weight per state, t_a rest_a / s (a = b) or t_a t_b / s, and R x R accumulators, so
// that nothing of size (A R, Y) is written.
template <int RR>
void schur_tile_pairs(const Game& G, Factor& F, const double* tx, const double* is, long y0, long T, double* S) {
  const long A = G.A, Y = G.Y, K = G.K;
  double* w = F.rest.data();   // kTile
  double* rest = F.Gt.data();  // kTile
  for (long a = 0; a < A; ++a) {
    const double* ta = tx + a * Y + y0;
    for (long b = a; b < A; ++b) {
      if (b == a) {
        for (long y = 0; y < T; ++y) rest[y] = 0.0;
        for (long c = 0; c < A; ++c) {
          if (c == a) continue;
          const double* tc = tx + c * Y + y0;
#pragma omp simd
          for (long y = 0; y < T; ++y) rest[y] += tc[y];
        }
#pragma omp simd
        for (long y = 0; y < T; ++y) w[y] = ta[y] * rest[y] * is[y];
      } else {
        const double* tb = tx + b * Y + y0;
#pragma omp simd
        for (long y = 0; y < T; ++y) w[y] = ta[y] * tb[y] * is[y];
      }
      const double* Da[RR];
      const double* Db[RR];
      for (int r = 0; r < RR; ++r) {
        Da[r] = G.D + (a * RR + r) * Y + y0;
        Db[r] = G.D + (b * RR + r) * Y + y0;
      }
      double acc[RR][RR];
      pair_dots<RR>(Da, Db, w, T, acc);
      const double sign = (a == b) ? 1.0 : -1.0;
      for (int r = 0; r < RR; ++r)
        for (int q = 0; q < RR; ++q) {
          if (a == b && q < r) continue;
          S[(a * RR + r) * K + b * RR + q] += sign * acc[r][q];
        }
    }
  }
}

// S_GG's contribution of the states y0 .. y0 + T (upper triangle), tx = theta's x part,
// is = 1 / s on those states
void schur_tile(const Game& G, Factor& F, const double* tx, const double* is, long y0, long T, double* S) {
  switch (G.R) {
    case 1: schur_tile_pairs<1>(G, F, tx, is, y0, T, S); break;
    case 2: schur_tile_pairs<2>(G, F, tx, is, y0, T, S); break;
    case 3: schur_tile_pairs<3>(G, F, tx, is, y0, T, S); break;
    default: schur_tile_general(G, F, tx, is, y0, T, S);
  }
}

// Mirror S_GG's upper triangle, add the slacks' diagonal (th_g, th_s) and the
// regularisation of alignjax.lp._ipm, and factor S by Jacobi-scaled Cholesky (pivots
// clamped at tiny, as the sweeps of alignjax._linalg.spd_inverse).
void finish_factor(const Game& G, Factor& F, const double* theta_g, double theta_s) {
  const long K = G.K;
  double* S = F.S.data();
  for (long i = 0; i < G.AR; ++i)
    for (long j = 0; j < i; ++j) S[i * K + j] = S[j * K + i];
  for (long i = 0; i < G.AR; ++i) S[i * K + i] += theta_g[i];
  S[(K - 1) * K + (K - 1)] = theta_s;
  for (long i = 0; i < K; ++i) S[i * K + i] += G.reg * std::fabs(S[i * K + i]) + G.tiny;
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

// The prior-rows-first factorisation at theta (n): 1 / s per state and the factored
// (A R + 1)-square Schur complement (alignjax.lp._ipm, factor_prior_first).
void factor(const Game& G, const double* theta, Factor& F) {
  const long A = G.A, Y = G.Y, K = G.K;
  F.tx = theta;
  double* inv_s = F.inv_s.data();
  for (long y = 0; y < Y; ++y) inv_s[y] = 0.0;
  for (long a = 0; a < A; ++a) {
    const double* ta = theta + a * Y;
#pragma omp simd
    for (long y = 0; y < Y; ++y) inv_s[y] += ta[y];
  }
#pragma omp simd
  for (long y = 0; y < Y; ++y) inv_s[y] = inv_s[y] > 0 ? 1.0 / inv_s[y] : 0.0;
  double* S = F.S.data();
  for (long i = 0; i < K * K; ++i) S[i] = 0.0;
  for (long y0 = 0; y0 < Y; y0 += kTile) schur_tile(G, F, theta, inv_s + y0, y0, std::min(kTile, Y - y0), S);
  finish_factor(G, F, theta + G.AY, theta[G.n - 1]);
}

// z (K) <- S^-1 z with the Jacobi-scaled Cholesky factor of F
void schur_solve(const Game& G, const Factor& F, double* z) {
  const long K = G.K;
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
}

// The prior rows' back-substitution on the states y0 .. y0 + T: lE (T) holds their
// right-hand side rE on entry and receives (rE - sum_a Theta_a (D^T l)_a) / s; tt
// (A x kTile) receives the (D^T l)_a.
void prior_rows_tile(const Game& G, const Factor& F, long y0, long T, const double* l, double* lE, double* tt) {
  for (long a = 0; a < G.A; ++a) {
    double* ta = tt + a * kTile;
    dt_tile(G, a, y0, T, l, ta);
    const double* tha = F.tx + a * G.Y + y0;
#pragma omp simd
    for (long y = 0; y < T; ++y) lE[y] -= tha[y] * ta[y];
  }
  const double* is = F.inv_s.data() + y0;
#pragma omp simd
  for (long y = 0; y < T; ++y) lE[y] *= is[y];
}

// dlam (m) = (A Theta A^T)^-1 rhs with F factored at Theta (prior rows eliminated
// first; alignjax.lp._ipm, normal_solve_prior_first). zK (K) and tt (A x kTile) are
// scratch.
void normal_solve(const Game& G, const Factor& F, const double* rhs, double* dlam, double* zK, double* tt) {
  const long A = G.A, Y = G.Y, R = G.R, K = G.K;
  const double* inv_s = F.inv_s.data();
  for (long a = 0; a < A; ++a)
    for (long r = 0; r < R; ++r) {
      const double* Dr = G.D + (a * R + r) * Y;
      const double* ta = F.tx + a * Y;
      double acc = 0.0;
#pragma omp simd reduction(+ : acc)
      for (long y = 0; y < Y; ++y) acc += Dr[y] * (ta[y] * (rhs[y] * inv_s[y]));
      zK[a * R + r] = rhs[Y + a * R + r] - acc;
    }
  zK[K - 1] = rhs[G.m - 1];
  schur_solve(G, F, zK);
  for (long i = 0; i < G.AR; ++i) dlam[Y + i] = zK[i];
  dlam[G.m - 1] = zK[K - 1];
  for (long y = 0; y < Y; ++y) dlam[y] = rhs[y];
  for (long y0 = 0; y0 < Y; y0 += kTile) prior_rows_tile(G, F, y0, std::min(kTile, Y - y0), zK, dlam + y0, tt);
}

struct Work {
  std::vector<double> theta, inv_z, inv_v, z, u1, u2, l1, l2;  // also the start point and purification
  // the loop: current, next and best iterates, residuals, directions
  std::vector<double> cv, cz, nv, nz, bv, bz, rd, nrd, dv, dz;  // n
  std::vector<double> cl, nl, bl, rp, nrp, dlam;                // m
  std::vector<double> rEp, lEp, rE1, rE2;                       // Y
  std::vector<double> tt, tq1, tq2, tp, col, ssum;              // tiles
  std::vector<double> accDx, accp, acc1, acc2, lGp, lGc, q1s, q2s;  // A R + 1
  std::vector<double> v_io, lam_io, z_io;                        // the game's (v, lam, z)
  Factor F;
  size_t bytes() const {
    size_t total = 0;
    for (const auto* v : {&theta, &inv_z, &inv_v, &z, &u1, &u2, &l1, &l2, &cv, &cz, &nv, &nz, &bv,
                          &bz, &rd, &nrd, &dv, &dz, &cl, &nl, &bl, &rp, &nrp, &dlam, &rEp, &lEp, &rE1, &rE2, &tt,
                          &tq1, &tq2, &tp, &col, &ssum, &v_io, &lam_io, &z_io, &F.inv_s, &F.Gt, &F.Ht, &F.Kt})
      total += v->capacity() * sizeof(double);
    return total;
  }
  // sized for G; grows only, so a thread's workspace is allocated once (page faults of
  // fresh allocations cost more than an iteration at Y = 1,000)
  void fit(const Game& G) {
    auto grow = [](std::vector<double>& v, long size) { if ((long)v.size() < size) v.resize(size); };

    for (auto* v : {&theta, &inv_z, &inv_v, &u1, &u2, &cv, &cz, &nv, &nz, &bv, &bz, &rd, &nrd, &dv, &dz})
      grow(*v, G.n);
    for (auto* v : {&l1, &l2, &cl, &nl, &bl, &rp, &nrp, &dlam}) grow(*v, G.m);
    for (auto* v : {&rEp, &lEp, &rE1, &rE2, &F.inv_s}) grow(*v, G.Y);
    for (auto* v : {&tt, &tq1, &tq2}) grow(*v, G.A * kTile);
    for (auto* v : {&tp, &col, &ssum, &F.rest}) grow(*v, kTile);
    for (auto* v : {&F.Gt, &F.Ht, &F.Kt}) grow(*v, G.AR * kTile);
    for (auto* v : {&accDx, &accp, &acc1, &acc2, &lGp, &lGc, &q1s, &q2s, &z, &F.d}) grow(*v, G.K);
    for (auto* v : {&F.L, &F.S}) grow(*v, G.K * G.K);
  }
};

// The calling thread's workspace, kept between calls (at Y = 1,000 the page faults of
// fresh allocations cost more than an iteration) unless it grew past kKeepBytes.
constexpr size_t kKeepBytes = size_t(32) << 20;
Work& workspace() {
  static thread_local Work W;
  return W;
}
void release_large_workspace() {
  Work& W = workspace();
  if (W.bytes() > kKeepBytes) W = Work();
}

// Mehrotra's starting point (Wright 1997, Section 10.2; alignjax.lp._ipm): least-squares
// solutions of the primal and dual equations at Theta = 1, shifted into the interior.
void start_point(const Game& G, Work& W, double* v, double* lam, double* z) {
  const long n = G.n, m = G.m, Y = G.Y, AY = G.AY;
  double* th = W.theta.data();
  for (long i = 0; i < n; ++i) th[i] = 1.0;
  factor(G, th, W.F);
  double *b = W.l1.data(), *tmp = W.l2.data();
  for (long y = 0; y < Y; ++y) b[y] = G.p[y];
  for (long i = Y; i < m - 1; ++i) b[i] = 0.0;
  b[m - 1] = G.f;
  normal_solve(G, W.F, b, tmp, W.z.data(), W.tt.data());
  at_op(G, tmp, v);  // v_ls
  double* c = W.u1.data();
  for (long i = 0; i < n; ++i) c[i] = i < AY ? -G.V[i] : 0.0;
  a_op(G, c, tmp);
  normal_solve(G, W.F, tmp, lam, W.z.data(), W.tt.data());  // lam0
  at_op(G, lam, z);
  for (long i = 0; i < n; ++i) z[i] = c[i] - z[i];  // z_ls
  double vmin = v[0], zmin = z[0];
  for (long i = 0; i < n; ++i) { vmin = std::min(vmin, v[i]); zmin = std::min(zmin, z[i]); }
  const double sv = std::max(-1.5 * vmin, 0.0), sz = std::max(-1.5 * zmin, 0.0);
  double vz = 0.0, vsum = 0.0, zsum = 0.0;
  for (long i = 0; i < n; ++i) {
    v[i] += sv;
    z[i] += sz;
    vz += v[i] * z[i];
    vsum += v[i];
    zsum += z[i];
  }
  const double dv = std::max(0.5 * vz / std::max(zsum, G.tiny), 1.0 / n);
  const double dz = std::max(0.5 * vz / std::max(vsum, G.tiny), 1.0 / n);
  for (long i = 0; i < n; ++i) { v[i] += dv; z[i] += dz; }
}

// Purification (alignjax.lp._ipm): zero the entries with v <= z, and project the rest
// onto the equations of that face in the metric diag(x) (tight slacks weighted by
// 1 / eps), with one step of iterative refinement. x_proj (A Y) receives the point.
void purify(const Game& G, Work& W, const double* v, const double* z, double* x_proj) {
  const long n = G.n, m = G.m, AY = G.AY;
  const double big = 1.0 / std::numeric_limits<double>::epsilon();
  double *v0 = W.u1.data(), *th = W.theta.data(), *w = W.u2.data();
  for (long i = 0; i < n; ++i) {
    const bool pos = v[i] > z[i];
    v0[i] = pos ? v[i] : 0.0;
    th[i] = i < AY ? v0[i] : (pos ? big : 0.0);
  }
  factor(G, th, W.F);
  double *rhs = W.l1.data(), *dlam = W.l2.data();
  a_op(G, v0, rhs);
  for (long y = 0; y < G.Y; ++y) rhs[y] = G.p[y] - rhs[y];
  for (long i = G.Y; i < m - 1; ++i) rhs[i] = -rhs[i];
  rhs[m - 1] = G.f - rhs[m - 1];
  normal_solve(G, W.F, rhs, dlam, W.z.data(), W.tt.data());
  // refinement: res = rhs - A Theta A^T dlam, dlam += solve(res)
  at_op(G, dlam, w);
  for (long i = 0; i < n; ++i) w[i] *= th[i];
  double* res = W.nl.data();
  a_op(G, w, res);
  for (long i = 0; i < m; ++i) res[i] = rhs[i] - res[i];
  double* d2 = W.nrp.data();
  normal_solve(G, W.F, res, d2, W.z.data(), W.tt.data());
  for (long i = 0; i < m; ++i) dlam[i] += d2[i];
  at_op(G, dlam, w);
  for (long i = 0; i < AY; ++i) x_proj[i] = v0[i] + th[i] * w[i];
}

// The fused iteration. Each sweep over tiles of kTile states does the work of several
// passes of alignjax.lp._ipm's program (the XLA version of this loop):
//   E  the new point (v + ap dv, lam + ad dlam, z + ad dz), its residuals and merit
//      (measure), and for the next iteration Theta = v / z, 1 / s, the Schur
//      complement (factor) and the predictor's reduced right-hand side;
//   B  the predictor's direction, only for its step lengths;
//   C  the predictor's complementarity mu_aff, and the corrector's reduced right-hand
//      side as a + sigma mu b (it is linear in sigma mu, which needs mu_aff);
//   D  the corrector's direction (dv, dz).
// Directions never stored (the predictor's) are formed again from their small parts.

// Sweep E. Returns the merit of the new point (NaN when it is not finite).
double sweep_point(const Game& G, Work& W, const double* v, const double* dv, double ap, const double* lam,
                   const double* dlam, const double* z, const double* dz, double ad, double* nv, double* nl,
                   double* nz, double* rp, double* rd, double b_norm, double c_norm, double* vz) {
  const long A = G.A, Y = G.Y, AY = G.AY, AR = G.AR, n = G.n, m = G.m, K = G.K;
  for (long i = 0; i < m; ++i) nl[i] = lam[i] + ad * dlam[i];
  double *th = W.theta.data(), *iz = W.inv_z.data(), *iv = W.inv_v.data(), *inv_s = W.F.inv_s.data();
  double *accDx = W.accDx.data(), *accp = W.accp.data(), *S = W.F.S.data(), *rEp = W.rEp.data();
  for (long i = 0; i < AR; ++i) accDx[i] = accp[i] = 0.0;
  for (long i = 0; i < K * K; ++i) S[i] = 0.0;
  double *col = W.col.data(), *ssum = W.ssum.data(), *tt = W.tt.data(), *tq = W.tq1.data();
  double rp_max = 0.0, rd_max = 0.0, pobj = 0.0, dobj = 0.0, s_vz = 0.0;
  for (long y0 = 0; y0 < Y; y0 += kTile) {
    const long T = std::min(kTile, Y - y0);
    for (long y = 0; y < T; ++y) col[y] = ssum[y] = 0.0;
    for (long a = 0; a < A; ++a) {
      const long o = a * Y + y0;
      double* ta = tt + a * kTile;
      dt_tile(G, a, y0, T, nl + Y, ta);
#pragma omp simd reduction(max : rd_max) reduction(+ : pobj, s_vz)
      for (long y = 0; y < T; ++y) {
        const double x = v[o + y] + ap * dv[o + y];
        const double zz = z[o + y] + ad * dz[o + y];
        nv[o + y] = x;
        nz[o + y] = zz;
        col[y] += x;
        const double r_ = -G.V[o + y] - (nl[y0 + y] + ta[y]) - zz;
        rd[o + y] = r_;
        const double ar = std::fabs(r_);
        rd_max = rd_max > ar ? rd_max : ar;
        pobj -= G.V[o + y] * x;
        s_vz += x * zz;
        const double izz = 1.0 / zz;
        iz[o + y] = izz;
        iv[o + y] = 1.0 / x;
        th[o + y] = x * izz;
        ssum[y] += x * izz;
      }
      d_tile(G, a, y0, T, nv + o, accDx);
    }
#pragma omp simd reduction(max : rp_max) reduction(+ : dobj)
    for (long y = 0; y < T; ++y) {
      const double r_ = G.p[y0 + y] - col[y];
      rp[y0 + y] = r_;
      const double ar = std::fabs(r_);
      rp_max = rp_max > ar ? rp_max : ar;
      dobj += G.p[y0 + y] * nl[y0 + y];
      inv_s[y0 + y] = ssum[y] > 0 ? 1.0 / ssum[y] : 0.0;
    }
    schur_tile(G, W.F, th, inv_s + y0, y0, T, S);
    // the predictor's q = Theta rd - rc / z with rc = -v z: q = Theta rd + v
    double* rE = rEp + y0;
    for (long y = 0; y < T; ++y) rE[y] = rp[y0 + y];
    for (long a = 0; a < A; ++a) {
      const long o = a * Y + y0;
      double* qa = tq + a * kTile;
#pragma omp simd
      for (long y = 0; y < T; ++y) {
        qa[y] = th[o + y] * rd[o + y] + nv[o + y];
        rE[y] += qa[y];
      }
    }
    for (long a = 0; a < A; ++a) {
      const long o = a * Y + y0;
      double* qa = tq + a * kTile;
#pragma omp simd
      for (long y = 0; y < T; ++y) qa[y] -= th[o + y] * (rE[y] * inv_s[y0 + y]);
      d_tile(G, a, y0, T, qa, accp);
    }
  }
  for (long k = AY; k < n; ++k) {
    nv[k] = v[k] + ap * dv[k];
    nz[k] = z[k] + ad * dz[k];
    s_vz += nv[k] * nz[k];
    iz[k] = 1.0 / nz[k];
    iv[k] = 1.0 / nv[k];
    th[k] = nv[k] * iz[k];
  }
  for (long i = 0; i < AR; ++i) {
    rp[Y + i] = nv[AY + i] - accDx[i];  // b_G - (D x - g)
    rp_max = std::max(rp_max, std::fabs(rp[Y + i]));
    rd[AY + i] = nl[Y + i] - nz[AY + i];  // c_g - (-lG) - z_g
    rd_max = std::max(rd_max, std::fabs(rd[AY + i]));
  }
  rp[m - 1] = G.f + nv[n - 1];
  rp_max = std::max(rp_max, std::fabs(rp[m - 1]));
  rd[n - 1] = nl[m - 1] - nz[n - 1];
  rd_max = std::max(rd_max, std::fabs(rd[n - 1]));
  dobj += G.f * nl[m - 1];
  W.F.tx = th;
  finish_factor(G, W.F, th + AY, th[n - 1]);
  *vz = s_vz;
  const double gap = std::fabs(pobj - dobj) / (1.0 + std::fabs(pobj));
  double merit = std::max(std::max(rp_max / b_norm, rd_max / c_norm), gap);
  if (std::isnan(rp_max) || std::isnan(rd_max) || std::isnan(gap) || std::isnan(s_vz))
    merit = std::numeric_limits<double>::quiet_NaN();
  return merit;
}

inline double step_from(double worst) { return worst > 1.0 ? 1.0 / worst : 1.0; }

// Sweep B: the predictor's direction (small parts solved first); only its step lengths
// and dlam_E (lEp) are kept.
void sweep_predictor(const Game& G, Work& W, const double* v, const double* rp, const double* rd, double* ap,
                     double* ad) {
  const long A = G.A, Y = G.Y, AY = G.AY, AR = G.AR, n = G.n, m = G.m, K = G.K;
  const double *th = W.theta.data(), *iz = W.inv_z.data(), *iv = W.inv_v.data();
  double* l = W.lGp.data();
  for (long i = 0; i < AR; ++i) l[i] = rp[Y + i] - (th[AY + i] * rd[AY + i] + v[AY + i]) + W.accp[i];
  l[K - 1] = rp[m - 1] - (th[n - 1] * rd[n - 1] + v[n - 1]);
  schur_solve(G, W.F, l);
  double *tt = W.tt.data(), *lEp = W.lEp.data();
  double wv = 0.0, wz = 0.0;
  for (long y0 = 0; y0 < Y; y0 += kTile) {
    const long T = std::min(kTile, Y - y0);
    double* lE = lEp + y0;
    for (long y = 0; y < T; ++y) lE[y] = W.rEp[y0 + y];
    prior_rows_tile(G, W.F, y0, T, l, lE, tt);
    for (long a = 0; a < A; ++a) {
      const long o = a * Y + y0;
      const double* ta = tt + a * kTile;
#pragma omp simd reduction(max : wv, wz)
      for (long y = 0; y < T; ++y) {
        const double dzi = rd[o + y] - (lE[y] + ta[y]);
        const double dvi = -v[o + y] - th[o + y] * dzi;
        const double rv = -dvi * iv[o + y], rz = -dzi * iz[o + y];
        wv = wv > rv ? wv : rv;
        wz = wz > rz ? wz : rz;
      }
    }
  }
  for (long k = AY; k < n; ++k) {
    const double dzi = rd[k] + l[k < n - 1 ? k - AY : K - 1];
    const double dvi = -v[k] - th[k] * dzi;
    wv = std::max(wv, -dvi * iv[k]);
    wz = std::max(wz, -dzi * iz[k]);
  }
  *ap = step_from(wv);
  *ad = step_from(wz);
}

// Sweep C: mu_aff of the predictor's step, and the corrector's reduced right-hand side
// in two parts, (q1, rE1, acc1) + sigma mu (q2, rE2, acc2), q = q1 + sigma mu q2 with
// q1 = Theta rd + w / z, q2 = -1 / z, w = v z + keep dv_a dz_a. Returns sum of the
// complementarity products after the predictor's step.
double sweep_corrector_rhs(const Game& G, Work& W, const double* v, const double* z, const double* rp,
                           const double* rd, double ap, double ad, double keep) {
  const long A = G.A, Y = G.Y, AY = G.AY, AR = G.AR, n = G.n, K = G.K;
  const double *th = W.theta.data(), *iz = W.inv_z.data(), *inv_s = W.F.inv_s.data();
  const double *lp = W.lGp.data(), *lEp = W.lEp.data();
  double *acc1 = W.acc1.data(), *acc2 = W.acc2.data(), *tq1 = W.tq1.data(), *tq2 = W.tq2.data(), *tp = W.tp.data();
  for (long i = 0; i < AR; ++i) acc1[i] = acc2[i] = 0.0;
  double mu_aff = 0.0;
  for (long y0 = 0; y0 < Y; y0 += kTile) {
    const long T = std::min(kTile, Y - y0);
    double *rE1 = W.rE1.data() + y0, *rE2 = W.rE2.data() + y0;
    for (long y = 0; y < T; ++y) {
      rE1[y] = rp[y0 + y];
      rE2[y] = 0.0;
    }
    for (long a = 0; a < A; ++a) {
      const long o = a * Y + y0;
      dt_tile(G, a, y0, T, lp, tp);
      double *q1 = tq1 + a * kTile, *q2 = tq2 + a * kTile;
#pragma omp simd reduction(+ : mu_aff)
      for (long y = 0; y < T; ++y) {
        const double dza = rd[o + y] - (lEp[y0 + y] + tp[y]);
        const double dva = -v[o + y] - th[o + y] * dza;
        mu_aff += (v[o + y] + ap * dva) * (z[o + y] + ad * dza);
        const double w = v[o + y] * z[o + y] + keep * dva * dza;
        q1[y] = th[o + y] * rd[o + y] + w * iz[o + y];
        q2[y] = -iz[o + y];
        rE1[y] += q1[y];
        rE2[y] += q2[y];
      }
    }
    for (long a = 0; a < A; ++a) {
      const long o = a * Y + y0;
      double *q1 = tq1 + a * kTile, *q2 = tq2 + a * kTile;
#pragma omp simd
      for (long y = 0; y < T; ++y) {
        const double t_ = th[o + y] * inv_s[y0 + y];
        q1[y] -= t_ * rE1[y];
        q2[y] -= t_ * rE2[y];
      }
      d_tile(G, a, y0, T, q1, acc1);
      d_tile(G, a, y0, T, q2, acc2);
    }
  }
  for (long k = AY; k < n; ++k) {
    const long i = k < n - 1 ? k - AY : K - 1;
    const double dza = rd[k] + lp[i];
    const double dva = -v[k] - th[k] * dza;
    mu_aff += (v[k] + ap * dva) * (z[k] + ad * dza);
    const double w = v[k] * z[k] + keep * dva * dza;
    W.q1s[i] = th[k] * rd[k] + w * iz[k];
    W.q2s[i] = -iz[k];
  }
  return mu_aff;
}

// Sweep D: the corrector's direction (dv, dlam, dz) at sigma mu = smu and its step lengths.
void sweep_corrector(const Game& G, Work& W, const double* v, const double* z, const double* rp,
                     const double* rd, double keep, double smu, double* dv, double* dlam, double* dz, double* ap,
                     double* ad) {
  const long A = G.A, Y = G.Y, AY = G.AY, AR = G.AR, n = G.n, m = G.m, K = G.K;
  const double *th = W.theta.data(), *iz = W.inv_z.data(), *iv = W.inv_v.data();
  const double *lp = W.lGp.data(), *lEp = W.lEp.data();
  double* l = W.lGc.data();
  for (long i = 0; i < AR; ++i) l[i] = rp[Y + i] - (W.q1s[i] + smu * W.q2s[i]) + W.acc1[i] + smu * W.acc2[i];
  l[K - 1] = rp[m - 1] - (W.q1s[K - 1] + smu * W.q2s[K - 1]);
  schur_solve(G, W.F, l);
  double *tt = W.tt.data(), *tp = W.tp.data();
  double wv = 0.0, wz = 0.0;
  for (long y0 = 0; y0 < Y; y0 += kTile) {
    const long T = std::min(kTile, Y - y0);
    double* lE = dlam + y0;
#pragma omp simd
    for (long y = 0; y < T; ++y) lE[y] = W.rE1[y0 + y] + smu * W.rE2[y0 + y];
    prior_rows_tile(G, W.F, y0, T, l, lE, tt);
    for (long a = 0; a < A; ++a) {
      const long o = a * Y + y0;
      const double* ta = tt + a * kTile;
      dt_tile(G, a, y0, T, lp, tp);
#pragma omp simd reduction(max : wv, wz)
      for (long y = 0; y < T; ++y) {
        const double dza = rd[o + y] - (lEp[y0 + y] + tp[y]);
        const double dva = -v[o + y] - th[o + y] * dza;
        const double rc = smu - (v[o + y] * z[o + y] + keep * dva * dza);
        const double dzi = rd[o + y] - (lE[y] + ta[y]);
        const double dvi = rc * iz[o + y] - th[o + y] * dzi;
        dz[o + y] = dzi;
        dv[o + y] = dvi;
        const double rv = -dvi * iv[o + y], rz = -dzi * iz[o + y];
        wv = wv > rv ? wv : rv;
        wz = wz > rz ? wz : rz;
      }
    }
  }
  for (long k = AY; k < n; ++k) {
    const long i = k < n - 1 ? k - AY : K - 1;
    const double dza = rd[k] + lp[i];
    const double dva = -v[k] - th[k] * dza;
    const double rc = smu - (v[k] * z[k] + keep * dva * dza);
    dz[k] = rd[k] + l[i];
    dv[k] = rc * iz[k] - th[k] * dz[k];
    wv = std::max(wv, -dv[k] * iv[k]);
    wz = std::max(wz, -dz[k] * iz[k]);
  }
  for (long i = 0; i < AR; ++i) dlam[Y + i] = l[i];
  dlam[m - 1] = l[K - 1];
  *ap = step_from(wv);
  *ad = step_from(wz);
}

// One game: the loop of alignjax.lp._ipm_xla from (v, lam, z); v, lam, z are overwritten
// by the best iterate (lowest merit). Writes the iteration count and the best merit.
void run_game(const Game& G, double* v_io, double* lam_io, double* z_io, double tol, long max_steps,
              int32_t* steps_out, double* merit_out) {
  const long n = G.n, m = G.m;
  double b_norm = std::fabs(G.f), v_max = 0.0;
  for (long y = 0; y < G.Y; ++y) b_norm = std::max(b_norm, std::fabs(G.p[y]));
  b_norm += 1.0;
  for (long i = 0; i < G.AY; ++i) v_max = std::max(v_max, std::fabs(G.V[i]));
  const double c_norm = 1.0 + v_max;
  Work& W = workspace();
  W.fit(G);
  // current iterate (cv, cl, cz) with residuals (rp, rd); the next in (nv, nl, nz, nrp,
  // nrd), swapped in on acceptance. The best is copied out only when the current
  // iterate is about to be replaced by a worse one.
  auto &cv = W.cv, &cl = W.cl, &cz = W.cz, &rp = W.rp, &rd = W.rd, &nv = W.nv, &nl = W.nl, &nz = W.nz,
       &nrp = W.nrp, &nrd = W.nrd, &bv = W.bv, &bl = W.bl, &bz = W.bz;
  double vz = 0.0;
  double best_merit = sweep_point(G, W, v_io, v_io, 0.0, lam_io, lam_io, z_io, z_io, 0.0, cv.data(), cl.data(),
                                  cz.data(), rp.data(), rd.data(), b_norm, c_norm, &vz);
  bool best_is_current = true;
  long k = 0, k_best = 0;
  bool failed = false, shrt = false;
  while (true) {
    const double mu = vz / n;
    const bool stall = (k - k_best > kStallSteps) || ((mu < 1e-4 * tol) && (k - k_best > 1));
    // (best_merit >= tol) is false for NaN, as in the XLA loop
    if (!(best_merit >= tol) || failed || stall || k >= max_steps) break;
    const double *v = cv.data(), *z = cz.data();
    double ap, ad;
    sweep_predictor(G, W, v, rp.data(), rd.data(), &ap, &ad);
    const double keep = shrt ? 0.0 : 1.0;
    const double mu_aff = sweep_corrector_rhs(G, W, v, z, rp.data(), rd.data(), ap, ad, keep) / n;
    const double ratio = mu_aff / std::max(mu, G.tiny);
    double sigma = std::isnan(ratio) ? ratio : std::min(std::max(ratio * ratio * ratio, 0.0), 1.0);
    if (shrt) sigma = std::max(sigma, kRecenterSigma);
    sweep_corrector(G, W, v, z, rp.data(), rd.data(), keep, sigma * mu, W.dv.data(), W.dlam.data(), W.dz.data(),
                    &ap, &ad);
    ap *= kStepFraction;
    ad *= kStepFraction;
    double nvz = 0.0;
    double mm = sweep_point(G, W, v, W.dv.data(), ap, cl.data(), W.dlam.data(), z, W.dz.data(), ad, nv.data(),
                            nl.data(), nz.data(), nrp.data(), nrd.data(), b_norm, c_norm, &nvz);
    const bool finite = std::isfinite(mm);
    if (!finite) mm = std::numeric_limits<double>::infinity();
    const bool better = mm < best_merit;
    if (finite) {
      if (!better && best_is_current) {  // keep the current (best) iterate before it goes
        std::copy(cv.begin(), cv.begin() + n, bv.begin());
        std::copy(cl.begin(), cl.begin() + m, bl.begin());
        std::copy(cz.begin(), cz.begin() + n, bz.begin());
      }
      cv.swap(nv); cl.swap(nl); cz.swap(nz); rp.swap(nrp); rd.swap(nrd);
      vz = nvz;
      best_is_current = better;
    }
    if (mm < kImprove * best_merit) k_best = k + 1;
    best_merit = std::min(mm, best_merit);
    k += 1;
    failed = !finite;
    shrt = std::min(ap, ad) < kShortStep;
  }
  const auto &ov = best_is_current ? cv : bv, &ol = best_is_current ? cl : bl, &oz = best_is_current ? cz : bz;
  std::copy(ov.begin(), ov.begin() + n, v_io);
  std::copy(ol.begin(), ol.begin() + m, lam_io);
  std::copy(oz.begin(), oz.begin() + n, z_io);
  *steps_out = static_cast<int32_t>(k);
  *merit_out = best_merit;
}

using B64 = ffi::Buffer<ffi::F64>;
using R64 = ffi::ResultBuffer<ffi::F64>;

// Inputs (leading batch dimensions allowed, the same on all): p (Y), V (A, Y),
// D (A, R, Y), f (); outputs: x (A, Y) the best iterate, x_proj (A, Y) its purification,
// lG (A, R) and ls () its obedience and floor-slack duals, steps, merit.
ffi::Error PriorIpmImpl(B64 p, B64 V, B64 D, B64 f, double tol, int64_t max_steps, int64_t threads, R64 ox,
                        R64 oxp, R64 olG, R64 ols, ffi::ResultBuffer<ffi::S32> osteps, R64 omerit) {
  auto vd = V.dimensions(), dd = D.dimensions();
  if (vd.size() < 2 || dd.size() < 3) return ffi::Error::InvalidArgument("alignjax_prior_ipm: bad ranks");
  const long A = vd[vd.size() - 2], Y = vd[vd.size() - 1], R = dd[dd.size() - 2];
  if (Y == 0 || A == 0 || R == 0) return ffi::Error::InvalidArgument("alignjax_prior_ipm: empty game");
  const long batch = static_cast<long>(p.element_count()) / Y;
  const long AY = A * Y, AR = A * R, n = AY + AR + 1, m = Y + AR + 1;
  auto one = [&](long b) {
    Game G{A, R, Y, AY, AR, n, m, AR + 1, p.typed_data() + b * Y, V.typed_data() + b * AY,
           D.typed_data() + b * AR * Y, f.typed_data()[b], 1e2 * std::numeric_limits<double>::epsilon(),
           std::numeric_limits<double>::min()};
    Work& S = workspace();
    S.fit(G);
    auto &v = S.v_io, &lam = S.lam_io, &z = S.z_io;
    v.resize(n); lam.resize(m); z.resize(n);
    start_point(G, S, v.data(), lam.data(), z.data());
    run_game(G, v.data(), lam.data(), z.data(), tol, max_steps, osteps->typed_data() + b,
             omerit->typed_data() + b);
    std::copy(v.begin(), v.begin() + AY, ox->typed_data() + b * AY);
    std::copy(lam.begin() + Y, lam.begin() + Y + AR, olG->typed_data() + b * AR);
    ols->typed_data()[b] = lam[m - 1];
    purify(G, S, v.data(), z.data(), oxp->typed_data() + b * AY);
  };
  const long nt = std::max<long>(1, std::min<long>(threads, batch));
  if (nt == 1) {
    for (long b = 0; b < batch; ++b) one(b);
    release_large_workspace();
  } else {
    std::vector<std::thread> pool;
    for (long t = 0; t < nt; ++t)
      pool.emplace_back([&, t] { for (long b = t; b < batch; b += nt) one(b); });
    for (auto& th : pool) th.join();  // (their workspaces go with them)
  }
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(AlignjaxPriorIpm, PriorIpmImpl,
                              ffi::Ffi::Bind()
                                  .Arg<B64>()
                                  .Arg<B64>()
                                  .Arg<B64>()
                                  .Arg<B64>()
                                  .Attr<double>("tol")
                                  .Attr<int64_t>("max_steps")
                                  .Attr<int64_t>("threads")
                                  .Ret<B64>()
                                  .Ret<B64>()
                                  .Ret<B64>()
                                  .Ret<B64>()
                                  .Ret<ffi::Buffer<ffi::S32>>()
                                  .Ret<B64>());
