// Orthogonal Procrustes distance (Ding et al. 2021; angular form Williams et al. 2021).
//
// With x and y centred and scaled to unit Frobenius norm, d² = 2 − 2‖xᵀy‖_*. The nuclear norm only
// needs a factor F of each input with F·Fᵀ = Xc·Xcᵀ: the centred features themselves when p ≤ n,
// or V·√Λ from the eigendecomposition of the centred Gram when p > n (an n-column factor), so a
// pair costs an SVD of at most min(p, n)² entries.
#pragma once

#include "reprsim/common.hpp"

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

}  // namespace reprsim
