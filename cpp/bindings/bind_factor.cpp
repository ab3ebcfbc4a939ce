// The streaming QR-factor state (reprsim._core.FactorState): the CCA family at in-memory accuracy.
#include <pybind11/eigen.h>

#include "common.hpp"
#include "reprsim/cca.hpp"
#include "reprsim/factor_state.hpp"
#include "reprsim/procrustes.hpp"

namespace reprsim::bind {

namespace {

using Names = std::vector<std::string>;

void check_names(const FactorState& s, const Names& nx, const Names& ny) {
    if (Index(nx.size()) != s.k1 || Index(ny.size()) != s.k2) {
        fail("expected ", s.k1, " x names and ", s.k2, " y names, got ", nx.size(), " and ", ny.size());
    }
}

void check_batch(const FactorState& s, const ArrayList& xs, const ArrayList& ys, const Names& nx, const Names& ny) {
    if (Index(xs.size()) != s.k1 || Index(ys.size()) != s.k2 || nx.size() != xs.size() || ny.size() != ys.size()) {
        fail("update expects ", s.k1, " x arrays and ", s.k2, " y arrays, got ", xs.size(), " and ", ys.size());
    }
    const py::ssize_t n = xs[0].ndim() == 2 ? xs[0].shape(0) : -1;
    for (const ArrayList* list : {&xs, &ys}) {
        for (const auto& a : *list) {
            if (a.ndim() != 2 || a.shape(0) != n || n < 1) fail("update: every batch must be 2-D with the same n >= 1");
        }
    }
}

// Flushes and checks that the state has seen enough rows for `what`.
void ready(FactorState& s, double min_n, const char* what) {
    flush(s);
    if (s.n < min_n) fail("the accumulator has seen n = ", s.n, " rows; ", what, " needs at least ", min_n);
}

template <class F>
py::array_t<double> pair_values(const FactorState& s, F&& f) {
    py::array_t<double> out({std::size_t(s.k1), std::size_t(s.k2)});
    double* o = out.mutable_data();
    py::gil_scoped_release release;
    for (Index i = 0; i < s.k1; ++i)
        for (Index j = 0; j < s.k2; ++j) o[i * s.k2 + j] = f(i, j);
    return out;
}

// Every layer's CCA factor, computed once for all pairs.
struct LayerFactors {
    std::vector<CCAFactor> x, y;
};

LayerFactors cca_factors(const FactorState& s, const Names& nx, const Names& ny, double keep, bool on_variance) {
    LayerFactors f;
    for (Index i = 0; i < s.k1; ++i) f.x.push_back(factor_cca_layer(s, i, nx[i], keep, on_variance));
    for (Index j = 0; j < s.k2; ++j) f.y.push_back(factor_cca_layer(s, s.k1 + j, ny[j], keep, on_variance));
    return f;
}

// A field of a state dict, converted, with a message naming it when it is missing or of the wrong type.
template <class T>
T field(const py::dict& d, const char* key) {
    if (!d.contains(key)) fail("state is missing the field '", key, "'");
    try {
        return d[key].cast<T>();
    } catch (const py::cast_error&) {
        fail("state field '", key, "' has the wrong type or shape");
    }
}

template <class T>
std::vector<T> field_list(const py::dict& d, const char* key, std::size_t size) {
    auto v = field<std::vector<T>>(d, key);
    if (v.size() != size) fail("state field '", key, "' holds ", v.size(), " entries; the layer counts need ", size);
    return v;
}

constexpr double kNuclearSlack = 1e-10;

}  // namespace

void bind_factor(py::module_& m) {
    py::class_<FactorState>(m, "FactorState")
        .def(py::init([](Index k1, Index k2) { return factor_state(k1, k2); }), py::arg("k1"), py::arg("k2"))
        .def_readonly("k1", &FactorState::k1)
        .def_readonly("k2", &FactorState::k2)
        .def_property_readonly("n", &FactorState::rows_seen)
        .def_readonly("rank_eps", &FactorState::rank_eps)
        .def_property_readonly("pending_rows", [](const FactorState& s) { return s.pending_rows; })
        .def_property_readonly("flush_rows", [](const FactorState& s) { return s.has_widths() ? s.flush_rows() : 0; })
        .def("widths",
             [](const FactorState& s) {
                 std::vector<Index> wx, wy;
                 if (s.has_widths()) {
                     wx.assign(s.widths.begin(), s.widths.begin() + s.k1);
                     wy.assign(s.widths.begin() + s.k1, s.widths.end());
                 }
                 return py::make_tuple(wx, wy);
             })
        .def("memory_bytes", [](const FactorState& s) { return factor_state_bytes(s); })
        // Bytes a state over layers of these widths holds once it has seen a batch (R and the row buffer),
        // and the most a flush or a read of the values adds on top (workspace); for checks before allocating.
        .def_static(
            "estimate_bytes",
            [](const std::vector<Index>& widths_x, const std::vector<Index>& widths_y) {
                FactorState s = factor_state(Index(widths_x.size()), Index(widths_y.size()));
                std::vector<Index> w = widths_x;
                w.insert(w.end(), widths_y.begin(), widths_y.end());
                const FactorEstimate e = factor_state_estimate(s.k1, s.k2, w);
                return py::make_tuple(e.state_bytes, e.workspace_bytes);
            },
            py::arg("widths_x"), py::arg("widths_y"))
        // Adds one batch (buffered, or flushed with the buffer). Checked in full before the state changes.
        .def(
            "update",
            [](FactorState& s, const ArrayList& xs, const ArrayList& ys, const Names& nx, const Names& ny) {
                check_batch(s, xs, ys, nx, ny);
                ArrayList all = xs;
                all.insert(all.end(), ys.begin(), ys.end());
                dispatch(all, [&](auto tag) {
                    using T = decltype(tag);
                    const auto vx = views_of<T>(xs, nx);
                    const auto vy = views_of<T>(ys, ny);
                    py::gil_scoped_release release;
                    factor_update(s, vx, vy, nx, ny);
                    return 0;
                });
            },
            py::arg("xs"), py::arg("ys"), py::arg("names_x"), py::arg("names_y"))
        .def(
            "flush",
            [](FactorState& s) {
                py::gil_scoped_release release;
                flush(s);
            })
        // Absorbs another state in place, leaving `other` empty.
        .def(
            "absorb",
            [](FactorState& s, FactorState& other) {
                if (&s == &other) fail("absorb: a state cannot absorb itself");
                py::gil_scoped_release release;
                check_compatible(s, other, "merge");  // before `other` is moved from
                merge_into(s, std::move(other));
                other = factor_state(s.k1, s.k2);
            },
            py::arg("other"))
        .def(
            "merged",
            [](const FactorState& a, const FactorState& b) {
                py::gil_scoped_release release;
                return merge(a, b);
            },
            py::arg("other"))
        .def(
            "cka",
            [](FactorState& s, bool debiased, const Names& nx, const Names& ny) {
                check_names(s, nx, ny);
                ready(s, debiased ? 4.0 : 2.0, debiased ? "debiased CKA" : "CKA");
                FactorLayerStats st;
                {
                    py::gil_scoped_release release;
                    st = factor_layer_stats(s);
                }
                return pair_values(s, [&](Index i, Index j) {
                    return cka_from_sums(factor_cka_sums(s, st, i, j), debiased, nx[i], ny[j]);
                });
            },
            py::arg("debiased"), py::arg("names_x"), py::arg("names_y"))
        // The nine scalars of cka_from_sums per pair: n, ‖cxy‖², ‖cxx‖², ‖cyy‖², tr cxx, tr cyy, Σd², Σe², Σde.
        .def("cka_sums",
             [](FactorState& s) {
                 ready(s, 1.0, "the CKA sums");
                 py::array_t<double> out({std::size_t(s.k1), std::size_t(s.k2), std::size_t(9)});
                 double* o = out.mutable_data();
                 py::gil_scoped_release release;
                 const FactorLayerStats st = factor_layer_stats(s);
                 for (Index i = 0; i < s.k1; ++i) {
                     for (Index j = 0; j < s.k2; ++j) {
                         const CKASums c = factor_cka_sums(s, st, i, j);
                         const double v[9] = {c.n, c.cross, c.sxx, c.syy, c.tx, c.ty, c.sum_d2, c.sum_e2, c.sum_de};
                         std::copy(v, v + 9, o + (i * s.k2 + j) * 9);
                     }
                 }
                 return out;
             })
        .def(
            "cxx",
            [](FactorState& s, Index i) {
                ready(s, 1.0, "a moment matrix");
                if (i < 0 || i >= s.k1) fail("x layer index ", i, " is out of range [0, ", s.k1, ")");
                return factor_cxx(s, i);
            },
            py::arg("i"))
        .def(
            "cyy",
            [](FactorState& s, Index j) {
                ready(s, 1.0, "a moment matrix");
                if (j < 0 || j >= s.k2) fail("y layer index ", j, " is out of range [0, ", s.k2, ")");
                return factor_cyy(s, j);
            },
            py::arg("j"))
        .def(
            "cxy",
            [](FactorState& s, Index i, Index j) {
                ready(s, 1.0, "a moment matrix");
                if (i < 0 || i >= s.k1 || j < 0 || j >= s.k2) fail("pair (", i, ", ", j, ") is out of range");
                return factor_cxy(s, i, j);
            },
            py::arg("i"), py::arg("j"))
        .def(
            "procrustes_nuclear",
            [](FactorState& s, const Names& nx, const Names& ny) {
                check_names(s, nx, ny);
                ready(s, 2.0, "the Procrustes distance");
                FactorLayerStats st;
                {
                    py::gil_scoped_release release;
                    st = factor_layer_stats(s);
                }
                return pair_values(
                    s, [&](Index i, Index j) { return factor_procrustes_nuclear(s, st, i, j, nx[i], ny[j]); });
            },
            py::arg("names_x"), py::arg("names_y"))
        // ‖x̂ − ŷQ*‖_F of every pair, from the R blocks.
        .def(
            "procrustes_chord",
            [](FactorState& s, const Names& nx, const Names& ny) {
                check_names(s, nx, ny);
                ready(s, 2.0, "the Procrustes distance");
                FactorLayerStats st;
                {
                    py::gil_scoped_release release;
                    st = factor_layer_stats(s);
                }
                return pair_values(s, [&](Index i, Index j) {
                    factor_procrustes_nuclear(s, st, i, j, nx[i], ny[j]);  // the checks and their messages
                    return factor_procrustes_chord(s, i, j);
                });
            },
            py::arg("names_x"), py::arg("names_y"))
        // The Procrustes distance of every pair: 2 − 2‖x̂ᵀŷ‖_* (or arccos with angular), from the residual
        // of the optimal rotation where the nuclear norm lies within 1e-3 of 1.
        .def(
            "procrustes_distance",
            [](FactorState& s, bool angular, const Names& nx, const Names& ny) {
                check_names(s, nx, ny);
                ready(s, 2.0, "the Procrustes distance");
                FactorLayerStats st;
                {
                    py::gil_scoped_release release;
                    st = factor_layer_stats(s);
                }
                return pair_values(s, [&](Index i, Index j) {
                    const double nuc = factor_procrustes_nuclear(s, st, i, j, nx[i], ny[j]);
                    if (!(nuc <= 1.0 + kNuclearSlack)) {
                        throw NumericalError("Procrustes nuclear norm " + std::to_string(nuc) +
                                             " exceeds 1 beyond rounding; please report this input");
                    }
                    if (nuc >= 1.0 - kProcrustesChordBand) {
                        return procrustes_distance_from_chord(factor_procrustes_chord(s, i, j), angular);
                    }
                    return angular ? std::acos(nuc) : 2.0 - 2.0 * nuc;
                });
            },
            py::arg("angular"), py::arg("names_x"), py::arg("names_y"))
        .def(
            "cca_statistic",
            [](FactorState& s, const std::string& stat, double keep, bool on_variance, const Names& nx,
               const Names& ny) {
                const CCAStat st = cca_stat_from_name(stat);
                check_names(s, nx, ny);
                ready(s, 3.0, "CCA");
                LayerFactors f;
                {
                    py::gil_scoped_release release;
                    f = cca_factors(s, nx, ny, keep, on_variance);
                }
                return pair_values(s, [&](Index i, Index j) {
                    return cca_statistic_from_m(factor_cross_m(f.x[i], f.y[j]), f.x[i].r, f.y[j].r, f.x[i].p,
                                                f.y[j].p, st);
                });
            },
            py::arg("stat"), py::arg("svcca_keep"), py::arg("on_variance"), py::arg("names_x"),
            py::arg("names_y"))
        // Every pair's canonical correlations (row-major over (i, j)).
        .def(
            "canonical_correlations",
            [](FactorState& s, const Names& nx, const Names& ny) {
                check_names(s, nx, ny);
                ready(s, 3.0, "CCA");
                std::vector<VecD> out;
                {
                    py::gil_scoped_release release;
                    const LayerFactors f = cca_factors(s, nx, ny, 0.0, true);
                    for (Index i = 0; i < s.k1; ++i)
                        for (Index j = 0; j < s.k2; ++j)
                            out.push_back(cca_from_m(factor_cross_m(f.x[i], f.y[j]), false).rho);
                }
                return out;
            },
            py::arg("names_x"), py::arg("names_y"))
        // The numerical ranks of every layer (the in-memory rule), x layers and y layers.
        .def(
            "cca_ranks",
            [](FactorState& s, const Names& nx, const Names& ny) {
                check_names(s, nx, ny);
                ready(s, 3.0, "CCA");
                std::vector<Index> rx, ry;
                {
                    py::gil_scoped_release release;
                    const LayerFactors f = cca_factors(s, nx, ny, 0.0, true);
                    for (const auto& a : f.x) rx.push_back(a.rank);
                    for (const auto& a : f.y) ry.push_back(a.rank);
                }
                return py::make_tuple(rx, ry);
            },
            py::arg("names_x"), py::arg("names_y"))
        .def("to_dict",
             [](FactorState& s) {
                 flush(s);
                 py::dict d;
                 d["k1"] = s.k1;
                 d["k2"] = s.k2;
                 d["n"] = s.n;
                 d["rank_eps"] = s.rank_eps;
                 if (!s.has_widths()) return d;
                 py::list wx, wy, mean_x, mean_y, lo_x, lo_y, sum_d2, sum_xd, sum_e2, sum_ye, sum_de, sum_xe, sum_yd;
                 for (Index l = 0; l < s.layers(); ++l) {
                     const bool x = l < s.k1;
                     (x ? wx : wy).append(s.widths[l]);
                     (x ? mean_x : mean_y).append(s.mean[l]);
                     (x ? lo_x : lo_y).append(s.mean_lo[l]);
                     (x ? sum_d2 : sum_e2).append(s.sums.d2[l]);
                     (x ? sum_xd : sum_ye).append(s.sums.ud[l]);
                 }
                 for (Index k = 0; k < s.k1 * s.k2; ++k) {
                     sum_de.append(s.sums.de[k]);
                     sum_xe.append(s.sums.xe[k]);
                     sum_yd.append(s.sums.yd[k]);
                 }
                 d["widths_x"] = wx;
                 d["widths_y"] = wy;
                 d["mean_x"] = mean_x;
                 d["mean_y"] = mean_y;
                 d["mean_x_lo"] = lo_x;
                 d["mean_y_lo"] = lo_y;
                 d["r"] = s.r;
                 d["sum_d2"] = sum_d2;
                 d["sum_xd"] = sum_xd;
                 d["sum_e2"] = sum_e2;
                 d["sum_ye"] = sum_ye;
                 d["sum_de"] = sum_de;
                 d["sum_xe"] = sum_xe;
                 d["sum_yd"] = sum_yd;
                 return d;
             })
        .def_static(
            "from_dict",
            [](const py::dict& d) {
                const Index k1 = field<Index>(d, "k1"), k2 = field<Index>(d, "k2");
                if (k1 < 1 || k2 < 1) fail("state field 'k1'/'k2': layer counts must be positive, got ", k1, " and ", k2);
                FactorState s = factor_state(k1, k2);
                s.n = field<double>(d, "n");
                s.rank_eps = field<double>(d, "rank_eps");
                if (d.contains("widths_x") || d.contains("widths_y") || s.n != 0.0) {
                    std::vector<Index> widths = field_list<Index>(d, "widths_x", std::size_t(k1));
                    const std::vector<Index> wy = field_list<Index>(d, "widths_y", std::size_t(k2));
                    widths.insert(widths.end(), wy.begin(), wy.end());
                    for (Index w : widths) {
                        if (w < 1) fail("state field 'widths_x'/'widths_y' holds a width ", w, " below 1");
                    }
                    const double n = s.n, eps = s.rank_eps;
                    set_widths(s, widths);
                    s.n = n;
                    s.rank_eps = eps;
                    s.r = field<MatD>(d, "r");
                    const auto mean_x = field_list<VecD>(d, "mean_x", std::size_t(k1));
                    const auto mean_y = field_list<VecD>(d, "mean_y", std::size_t(k2));
                    const auto sum_d2 = field_list<double>(d, "sum_d2", std::size_t(k1));
                    const auto sum_e2 = field_list<double>(d, "sum_e2", std::size_t(k2));
                    const auto sum_xd = field_list<VecD>(d, "sum_xd", std::size_t(k1));
                    const auto sum_ye = field_list<VecD>(d, "sum_ye", std::size_t(k2));
                    s.sums.de = field_list<double>(d, "sum_de", std::size_t(k1 * k2));
                    s.sums.xe = field_list<VecD>(d, "sum_xe", std::size_t(k1 * k2));
                    s.sums.yd = field_list<VecD>(d, "sum_yd", std::size_t(k1 * k2));
                    s.mean.clear();
                    s.mean.insert(s.mean.end(), mean_x.begin(), mean_x.end());
                    s.mean.insert(s.mean.end(), mean_y.begin(), mean_y.end());
                    // The low-order parts are optional (zero when absent: the means as float64 numbers).
                    s.mean_lo.clear();
                    for (Index l = 0; l < s.layers(); ++l) s.mean_lo.push_back(VecD::Zero(s.widths[l]));
                    if (d.contains("mean_x_lo") || d.contains("mean_y_lo")) {
                        const auto lo_x = field_list<VecD>(d, "mean_x_lo", std::size_t(k1));
                        const auto lo_y = field_list<VecD>(d, "mean_y_lo", std::size_t(k2));
                        s.mean_lo.clear();
                        s.mean_lo.insert(s.mean_lo.end(), lo_x.begin(), lo_x.end());
                        s.mean_lo.insert(s.mean_lo.end(), lo_y.begin(), lo_y.end());
                    }
                    s.sums.d2.clear();
                    s.sums.d2.insert(s.sums.d2.end(), sum_d2.begin(), sum_d2.end());
                    s.sums.d2.insert(s.sums.d2.end(), sum_e2.begin(), sum_e2.end());
                    s.sums.ud.clear();
                    s.sums.ud.insert(s.sums.ud.end(), sum_xd.begin(), sum_xd.end());
                    s.sums.ud.insert(s.sums.ud.end(), sum_ye.begin(), sum_ye.end());
                }
                validate(s);
                return s;
            },
            py::arg("state"));
}

}  // namespace reprsim::bind
