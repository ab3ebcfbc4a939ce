// The streaming accumulator state (reprsim._core.StreamState) and the minibatch CKA terms.
#include <pybind11/eigen.h>

#include <type_traits>

#include "common.hpp"
#include "reprsim/cca.hpp"
#include "reprsim/cka.hpp"
#include "reprsim/stream.hpp"

namespace reprsim::bind {

namespace {

using Names = std::vector<std::string>;

void check_batch(const StreamState& s, const ArrayList& xs, const ArrayList& ys, const Names& nx, const Names& ny) {
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

template <class F>
py::array_t<double> pair_values(const StreamState& s, F&& f) {
    py::array_t<double> out({std::size_t(s.k1), std::size_t(s.k2)});
    double* o = out.mutable_data();
    py::gil_scoped_release release;
    for (Index i = 0; i < s.k1; ++i)
        for (Index j = 0; j < s.k2; ++j) o[i * s.k2 + j] = f(i, j);
    return out;
}

// One layer's CCA factor: pivoted Cholesky, SVCCA's reduction when keep > 0, the rank check.
CholFactor checked_factor(const StreamState& s, const LayerMoments& layer, const std::string& name, double keep,
                          bool on_variance) {
    CholFactor f = chol_factor(layer.c, s.n, s.rank_eps, name);
    if (keep > 0) chol_svcca_reduce(f, keep, on_variance);
    CCAFactor shape;
    shape.n = f.n;
    shape.p = f.p;
    shape.rank = f.rank;
    require_nontrivial_rank(shape, name.c_str());
    return f;
}

template <class T>
T item(const py::dict& d, const char* key) {
    if (!d.contains(key)) fail("state is missing the field '", key, "'");
    return d[key].cast<T>();
}

}  // namespace

void bind_stream(py::module_& m) {
    py::class_<StreamState>(m, "StreamState")
        .def(py::init([](Index k1, Index k2) {
                 if (k1 < 1 || k2 < 1) fail("layer counts must be positive, got ", k1, " and ", k2);
                 StreamState s;
                 s.k1 = k1;
                 s.k2 = k2;
                 return s;
             }),
             py::arg("k1"), py::arg("k2"))
        .def_readonly("k1", &StreamState::k1)
        .def_readonly("k2", &StreamState::k2)
        .def_readonly("n", &StreamState::n)
        .def_readonly("rank_eps", &StreamState::rank_eps)
        .def("widths",
             [](const StreamState& s) {
                 std::vector<Index> wx, wy;
                 for (Index i = 0; i < Index(s.x.size()); ++i) wx.push_back(s.width_x(i));
                 for (Index j = 0; j < Index(s.y.size()); ++j) wy.push_back(s.width_y(j));
                 return py::make_tuple(wx, wy);
             })
        // Adds one batch in place. The batch's moments are computed (and its values checked) in full
        // before s is touched, so a failed update changes nothing.
        .def(
            "update",
            [](StreamState& s, const ArrayList& xs, const ArrayList& ys, const Names& nx, const Names& ny) {
                check_batch(s, xs, ys, nx, ny);
                ArrayList all = xs;
                all.insert(all.end(), ys.begin(), ys.end());
                dispatch(all, [&](auto tag) {
                    using T = decltype(tag);
                    const auto vx = views_of<T>(xs, nx);
                    const auto vy = views_of<T>(ys, ny);
                    py::gil_scoped_release release;
                    StreamState batch = batch_moments(vx, vy, nx, ny);
                    check_compatible(s, batch, "update");
                    merge_into(s, std::move(batch));
                    return 0;
                });
            },
            py::arg("xs"), py::arg("ys"), py::arg("names_x"), py::arg("names_y"))
        // Absorbs another state in place (Chan et al.'s update), leaving `other` empty. Used to add a
        // batch whose moments were computed on their own, so that the accumulator is touched only
        // for the O(p²) merge.
        .def(
            "absorb",
            [](StreamState& s, StreamState& other) {
                if (&s == &other) fail("absorb: a state cannot absorb itself");
                py::gil_scoped_release release;
                check_compatible(s, other, "update");
                merge_into(s, std::move(other));
                other.n = 0.0;
                other.rank_eps = 0.0;
                other.x.clear();
                other.y.clear();
                other.xy.clear();
            },
            py::arg("other"))
        .def(
            "merged",
            [](const StreamState& a, const StreamState& b) {
                py::gil_scoped_release release;
                return merge(a, b);
            },
            py::arg("other"))
        .def("cka",
             [](const StreamState& s, bool debiased, const Names& nx, const Names& ny) {
                 return pair_values(s, [&](Index i, Index j) { return stream_cka(s, i, j, debiased, nx[i], ny[j]); });
             },
             py::arg("debiased"), py::arg("names_x"), py::arg("names_y"))
        // The sums of linear CKA (see cka_from_sums) of every pair, in the layout of linear_cka_sums_matrix.
        .def("cka_sums",
             [](const StreamState& s) {
                 if (s.empty()) fail("the accumulator has seen no rows yet; call update first");
                 MatR<double> cross(s.k1, s.k2), sum_de(s.k1, s.k2);
                 VecD sxx(s.k1), tx(s.k1), sd2x(s.k1), syy(s.k2), ty(s.k2), sd2y(s.k2);
                 {
                     py::gil_scoped_release release;
                     for (Index i = 0; i < s.k1; ++i) {
                         sxx[i] = s.x[i].c.squaredNorm();
                         tx[i] = s.x[i].c.trace();
                         sd2x[i] = s.x[i].sum_d2;
                     }
                     for (Index j = 0; j < s.k2; ++j) {
                         syy[j] = s.y[j].c.squaredNorm();
                         ty[j] = s.y[j].c.trace();
                         sd2y[j] = s.y[j].sum_d2;
                     }
                     for (Index i = 0; i < s.k1; ++i)
                         for (Index j = 0; j < s.k2; ++j) {
                             cross(i, j) = s.pair(i, j).cxy.squaredNorm();
                             sum_de(i, j) = s.pair(i, j).sum_de;
                         }
                 }
                 py::dict d;
                 d["n"] = s.n;
                 d["eps"] = std::numeric_limits<double>::epsilon();
                 d["cross"] = cross;
                 d["sum_de"] = sum_de;
                 d["sxx"] = sxx;
                 d["tx"] = tx;
                 d["sum_d2"] = sd2x;
                 d["scale_x"] = VecD::Ones(s.k1).eval();
                 d["syy"] = syy;
                 d["ty"] = ty;
                 d["sum_e2"] = sd2y;
                 d["scale_y"] = VecD::Ones(s.k2).eval();
                 return d;
             })
        .def("procrustes_nuclear",
             [](const StreamState& s, const Names& nx, const Names& ny) {
                 return pair_values(
                     s, [&](Index i, Index j) { return stream_procrustes_nuclear(s, i, j, nx[i], ny[j]); });
             },
             py::arg("names_x"), py::arg("names_y"))
        .def(
            "cca_statistic",
            [](const StreamState& s, const std::string& stat, double keep, bool on_variance, const Names& nx,
               const Names& ny) {
                const CCAStat st = cca_stat_from_name(stat);
                if (s.n < 3) fail("the accumulator has seen n = ", s.n, " rows; CCA needs at least 3");
                std::vector<CholFactor> fx, fy;
                {
                    py::gil_scoped_release release;
                    for (Index i = 0; i < s.k1; ++i) fx.push_back(checked_factor(s, s.x[i], nx[i], keep, on_variance));
                    for (Index j = 0; j < s.k2; ++j) fy.push_back(checked_factor(s, s.y[j], ny[j], keep, on_variance));
                }
                return pair_values(s, [&](Index i, Index j) {
                    MatD mm = stream_cross_q(fx[i], fy[j], s.pair(i, j).cxy);
                    return cca_statistic_from_m(std::move(mm), fx[i].r, fy[j].r, fx[i].p, fy[j].p, st);
                });
            },
            py::arg("stat"), py::arg("svcca_keep"), py::arg("on_variance"), py::arg("names_x"), py::arg("names_y"))
        // Every pair's canonical correlations (row-major over (i, j)); each layer is factorised once.
        .def(
            "canonical_correlations",
            [](const StreamState& s, const Names& nx, const Names& ny) {
                if (s.n < 3) fail("the accumulator has seen n = ", s.n, " rows; CCA needs at least 3");
                std::vector<VecD> out;
                {
                    py::gil_scoped_release release;
                    std::vector<CholFactor> fx, fy;
                    for (Index i = 0; i < s.k1; ++i) fx.push_back(checked_factor(s, s.x[i], nx[i], 0.0, true));
                    for (Index j = 0; j < s.k2; ++j) fy.push_back(checked_factor(s, s.y[j], ny[j], 0.0, true));
                    for (Index i = 0; i < s.k1; ++i)
                        for (Index j = 0; j < s.k2; ++j)
                            out.push_back(cca_from_m(stream_cross_q(fx[i], fy[j], s.pair(i, j).cxy), false).rho);
                }
                return out;
            },
            py::arg("names_x"), py::arg("names_y"))
        // Structured fields: per-layer lists (x then y) and per-pair lists (row-major over (i, j)).
        .def("to_dict",
             [](const StreamState& s) {
                 py::dict d;
                 d["k1"] = s.k1;
                 d["k2"] = s.k2;
                 d["n"] = s.n;
                 d["rank_eps"] = s.rank_eps;
                 py::list mean_x, cxx, sum_d2, sum_xd, mean_y, cyy, sum_e2, sum_ye, cxy, sum_de, sum_xe, sum_yd;
                 for (const auto& l : s.x) {
                     mean_x.append(l.mean);
                     cxx.append(l.c);
                     sum_d2.append(l.sum_d2);
                     sum_xd.append(l.sum_ud);
                 }
                 for (const auto& l : s.y) {
                     mean_y.append(l.mean);
                     cyy.append(l.c);
                     sum_e2.append(l.sum_d2);
                     sum_ye.append(l.sum_ud);
                 }
                 for (const auto& p : s.xy) {
                     cxy.append(p.cxy);
                     sum_de.append(p.sum_de);
                     sum_xe.append(p.sum_xe);
                     sum_yd.append(p.sum_yd);
                 }
                 d["mean_x"] = mean_x;
                 d["cxx"] = cxx;
                 d["sum_d2"] = sum_d2;
                 d["sum_xd"] = sum_xd;
                 d["mean_y"] = mean_y;
                 d["cyy"] = cyy;
                 d["sum_e2"] = sum_e2;
                 d["sum_ye"] = sum_ye;
                 d["cxy"] = cxy;
                 d["sum_de"] = sum_de;
                 d["sum_xe"] = sum_xe;
                 d["sum_yd"] = sum_yd;
                 return d;
             })
        .def_static(
            "from_dict",
            [](const py::dict& d) {
                StreamState s;
                s.k1 = item<Index>(d, "k1");
                s.k2 = item<Index>(d, "k2");
                s.n = item<double>(d, "n");
                s.rank_eps = item<double>(d, "rank_eps");
                if (s.k1 < 1 || s.k2 < 1) fail("state: layer counts must be positive");
                if (s.n == 0) return s;
                const auto mean_x = item<std::vector<VecD>>(d, "mean_x");
                const auto cxx = item<std::vector<MatD>>(d, "cxx");
                const auto sum_d2 = item<std::vector<double>>(d, "sum_d2");
                const auto sum_xd = item<std::vector<VecD>>(d, "sum_xd");
                const auto mean_y = item<std::vector<VecD>>(d, "mean_y");
                const auto cyy = item<std::vector<MatD>>(d, "cyy");
                const auto sum_e2 = item<std::vector<double>>(d, "sum_e2");
                const auto sum_ye = item<std::vector<VecD>>(d, "sum_ye");
                const auto cxy = item<std::vector<MatD>>(d, "cxy");
                const auto sum_de = item<std::vector<double>>(d, "sum_de");
                const auto sum_xe = item<std::vector<VecD>>(d, "sum_xe");
                const auto sum_yd = item<std::vector<VecD>>(d, "sum_yd");
                const std::size_t k1 = std::size_t(s.k1), k2 = std::size_t(s.k2);
                if (mean_x.size() != k1 || cxx.size() != k1 || sum_d2.size() != k1 || sum_xd.size() != k1 ||
                    mean_y.size() != k2 || cyy.size() != k2 || sum_e2.size() != k2 || sum_ye.size() != k2 ||
                    cxy.size() != k1 * k2 || sum_de.size() != k1 * k2 || sum_xe.size() != k1 * k2 ||
                    sum_yd.size() != k1 * k2) {
                    fail("state: the field lists do not match the layer counts ", k1, " x ", k2);
                }
                auto layer = [](const VecD& mean, const MatD& c, double d2, const VecD& ud, const char* what) {
                    const Index p = mean.size();
                    if (c.rows() != p || c.cols() != p || ud.size() != p) {
                        fail("state: the fields of ", what, " disagree on its width ", p);
                    }
                    return LayerMoments{mean, c, d2, ud};
                };
                for (std::size_t i = 0; i < k1; ++i) s.x.push_back(layer(mean_x[i], cxx[i], sum_d2[i], sum_xd[i], "x"));
                for (std::size_t j = 0; j < k2; ++j) s.y.push_back(layer(mean_y[j], cyy[j], sum_e2[j], sum_ye[j], "y"));
                for (std::size_t i = 0; i < k1; ++i) {
                    for (std::size_t j = 0; j < k2; ++j) {
                        const std::size_t k = i * k2 + j;
                        const Index p1 = mean_x[i].size(), p2 = mean_y[j].size();
                        if (cxy[k].rows() != p1 || cxy[k].cols() != p2 || sum_xe[k].size() != p1 ||
                            sum_yd[k].size() != p2) {
                            fail("state: the pair fields of (", i, ", ", j, ") do not match the widths ", p1, " and ",
                                 p2);
                        }
                        s.xy.push_back(PairMoments{cxy[k], sum_de[k], sum_xe[k], sum_yd[k]});
                    }
                }
                return s;
            },
            py::arg("state"));

    m.def(
        "batch_hsic",
        [](const ArrayList& xs, const ArrayList& ys, bool debiased, const Names& nx, const Names& ny) {
            ArrayList all = xs;
            all.insert(all.end(), ys.begin(), ys.end());
            return dispatch(all, [&](auto tag) {
                using T = decltype(tag);
                const auto vx = views_of<T>(xs, nx);
                const auto vy = views_of<T>(ys, ny);
                MatD xy;
                VecD xx, yy;
                {
                    LongCall call;  // stateless: Ctrl-C can stop it between products
                    if constexpr (std::is_same<T, float>::value) {
                        // float32 batches: float32 products of data centred in float64 (minibatch_hsic).
                        BatchHSIC h = minibatch_hsic(vx, vy, debiased, nx, ny);
                        xy = std::move(h.xy), xx = std::move(h.xx), yy = std::move(h.yy);
                    } else {
                        HSICTerms h = batch_hsic(vx, vy, debiased, nx, ny);
                        xy = std::move(h.xy), xx = std::move(h.xx), yy = std::move(h.yy);
                    }
                }
                return py::make_tuple(xy, xx, yy);
            });
        },
        py::arg("xs"), py::arg("ys"), py::arg("debiased"), py::arg("names_x"), py::arg("names_y"));

}

}  // namespace reprsim::bind
