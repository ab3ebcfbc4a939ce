// Orthogonal Procrustes distance (Ding et al. 2021; angular form Williams et al. 2021).
//
// With x and y centred and scaled to unit Frobenius norm, d² = 2 − 2‖xᵀy‖_*. The nuclear norm only
// needs a factor F of each input with F·Fᵀ = Xc·Xcᵀ: the centred features themselves when p ≤ n,
// or V·√Λ from the eigendecomposition of the centred Gram when p > n (an n-column factor), so a
// pair costs an SVD of at most min(p, n)² entries.
#pragma once

#include "reprsim/common.hpp"

#include <cmath>

namespace reprsim {

template <class T>
struct ProcrustesFactor {
    Index n = 0;
    Index p = 0;
    MatR<T> f;         // n×k factor with F·Fᵀ = Xc·Xcᵀ
    double norm = 0;   // ‖Xc‖_F
};

template <class T>
ProcrustesFactor<T> procrustes_factor(const View<T>& x, const char* name);

// ‖x̂ᵀŷ‖_* of the centred, unit-norm inputs (in [0, 1] up to rounding).
template <class T>
double procrustes_nuclear(const ProcrustesFactor<T>& fx, const ProcrustesFactor<T>& fy);

// Distances near 0. With θ = arccos ‖x̂ᵀŷ‖_* the Procrustes angle, the residual of the optimal
// rotation has ‖x̂ − ŷ·Q*‖_F = 2·sin(θ/2) (the chord), so θ = 2·arcsin(chord/2) and the squared
// distance 2 − 2‖x̂ᵀŷ‖_* = chord². Formed from the residual itself, the chord keeps its relative
// precision down to 0, where arccos of a nuclear norm within rounding of 1 turns ε into √ε. Callers
// form it only when the nuclear norm lies within kProcrustesChordBand of 1 (the common case stays
// one product and a values-only SVD).
constexpr double kProcrustesChordBand = 1e-3;

// The chord of two float64 matrices with the same rows (each scaled here to unit Frobenius norm; the
// narrower is rotated onto the wider, the zero-padded form of the Procrustes problem). The rows need
// not be samples: any a, b with the same a·aᵀ, a·bᵀ, b·bᵀ as the centred inputs (R blocks of a joint
// QR factor, or an LQ reduction) give the same chord. Throws when either is zero.
double procrustes_chord_rows(const MatD& a, const MatD& b);

// The chord of two representations: centred in float64, each reduced to n columns by an LQ
// factorisation when wider than n (an isometry, so the chord is unchanged), then procrustes_chord_rows.
template <class T>
double procrustes_chord(const View<T>& x, const View<T>& y, const char* name_x, const char* name_y);

// The Procrustes distance from the chord: squared (2 − 2‖x̂ᵀŷ‖_*) or angular.
inline double procrustes_distance_from_chord(double chord, bool angular) {
    return angular ? 2.0 * std::asin(std::min(1.0, 0.5 * chord)) : chord * chord;
}

}  // namespace reprsim
