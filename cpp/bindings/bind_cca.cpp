#include "common.hpp"
#include "reprsim/cca.hpp"

namespace reprsim::bind {

namespace {

// The factor of one input: QR, then SVCCA's reduction when keep > 0, then the rank check.
template <class T>
CCAFactor make_factor(const View<T>& v, const char* name, double keep, bool on_variance, bool allow_cholesky = true) {
    CCAFactor f = cca_factor(v, default_rank_rtol<T>(v.n, v.p), name, allow_cholesky);
    if (keep > 0) f = svcca_reduce(f, keep, on_variance);
    require_nontrivial_rank(f, name);
    return f;
}

}  // namespace

void bind_cca(py::module_& m) {
    m.def(
        "canonical_correlations",
        [](const py::array& x, const py::array& y, bool allow_cholesky) {
            return dispatch(ArrayList{x, y}, [&](auto tag) {
                using T = decltype(tag);
                const View<T> vx = view_of<T>(x, "x"), vy = view_of<T>(y, "y");
                VecD rho;
                {
                    LongCall call;
                    CCAPairM pm;
                    if (allow_cholesky && cca_pair_m(vx, vy, 0.0, true, pm)) {
                        rho = cca_from_m(std::move(pm.m), false).rho;
                    } else {
                        const CCAFactor fx = make_factor(vx, "x", 0.0, true, allow_cholesky);
                        const CCAFactor fy = make_factor(vy, "y", 0.0, true, allow_cholesky);
                        rho = cca_pair(fx, fy, false).rho;
                    }
                }
                py::array_t<double> out(rho.size());
                std::copy(rho.data(), rho.data() + rho.size(), out.mutable_data());
                return out;
            });
        },
        py::arg("x"), py::arg("y"), py::arg("allow_cholesky") = true);

    m.def(
        "cca_statistic",
        [](const py::array& x, const py::array& y, const std::string& stat, double keep, bool on_variance,
           bool allow_cholesky, bool with_ranks) {
            const CCAStat st = cca_stat_from_name(stat);
            return dispatch(ArrayList{x, y}, [&](auto tag) -> py::object {
                using T = decltype(tag);
                const View<T> vx = view_of<T>(x, "x"), vy = view_of<T>(y, "y");
                double value = 0.0;
                Index rx = 0, ry = 0;
                {
                    LongCall call;
                    CCAPairM pm;
                    if (allow_cholesky && cca_pair_m(vx, vy, keep, on_variance, pm)) {
                        rx = pm.rx.rows();
                        ry = pm.ry.rows();
                        value = cca_statistic_from_m(std::move(pm.m), pm.rx, pm.ry, pm.px, pm.py, st);
                    } else {
                        const CCAFactor fx = make_factor(vx, "x", keep, on_variance, allow_cholesky);
                        const CCAFactor fy = make_factor(vy, "y", keep, on_variance, allow_cholesky);
                        value = cca_statistic(fx, fy, st);
                        rx = fx.rank;
                        ry = fy.rank;
                    }
                }
                if (with_ranks) return py::make_tuple(value, rx, ry);
                return py::float_(value);
            });
        },
        py::arg("x"), py::arg("y"), py::arg("stat"), py::arg("svcca_keep") = 0.0, py::arg("on_variance") = true,
        py::arg("allow_cholesky") = true, py::arg("with_ranks") = false);

    m.def(
        "cca_summary",
        [](const py::array& x, const py::array& y, const std::string& pwcca_stat, bool with_ranks) {
            const CCAStat st = cca_stat_from_name(pwcca_stat);
            return dispatch(ArrayList{x, y}, [&](auto tag) {
                using T = decltype(tag);
                const View<T> vx = view_of<T>(x, "x"), vy = view_of<T>(y, "y");
                CCASummary s;
                {
                    LongCall call;
                    CCAPairM pm;
                    if (cca_pair_m(vx, vy, 0.0, true, pm)) {
                        s = cca_summary_from_m(std::move(pm.m), pm.rx, pm.ry, pm.px, pm.py, st);
                        s.rank_x = pm.rx.rows();  // the Cholesky route is taken for full column ranks only
                        s.rank_y = pm.ry.rows();
                    } else {
                        const CCAFactor fx = make_factor(vx, "x", 0.0, true);
                        const CCAFactor fy = make_factor(vy, "y", 0.0, true);
                        s = cca_summary(fx, fy, st);
                    }
                }
                py::array_t<double> rho(s.rho.size());
                std::copy(s.rho.data(), s.rho.data() + s.rho.size(), rho.mutable_data());
                if (with_ranks) return py::tuple(py::make_tuple(rho, s.mean, s.mean_sq, s.pwcca, s.rank_x, s.rank_y));
                return py::tuple(py::make_tuple(rho, s.mean, s.mean_sq, s.pwcca));
            });
        },
        py::arg("x"), py::arg("y"), py::arg("pwcca_stat"), py::arg("with_ranks") = false);

    m.def(
        "cca_route",
        [](const py::array& x) {
            return dispatch(ArrayList{x}, [&](auto tag) {
                using T = decltype(tag);
                const View<T> v = view_of<T>(x, "x");
                LongCall call;
                return cca_factor(v, default_rank_rtol<T>(v.n, v.p), "x").cholesky ? "cholesky" : "householder";
            });
        },
        py::arg("x"));

    m.def(
        "cca_matrix",
        [](const ArrayList& xs, const std::optional<ArrayList>& ys, const std::string& stat, double keep,
           bool on_variance) {
            const CCAStat st = cca_stat_from_name(stat);
            const bool symmetric = st == CCAStat::Mean || st == CCAStat::MeanSq;  // padded: x is the reference
            ArrayList all = xs;
            if (ys) all.insert(all.end(), ys->begin(), ys->end());
            return dispatch(all, [&](auto tag) {
                using T = decltype(tag);
                return pair_matrix<T>(
                    xs, ys, symmetric,
                    [&](const View<T>& v, const char* name) { return make_factor(v, name, keep, on_variance); },
                    [&](const CCAFactor& a, const CCAFactor& b) { return cca_statistic(a, b, st); });
            });
        },
        py::arg("xs"), py::arg("ys"), py::arg("stat"), py::arg("svcca_keep") = 0.0, py::arg("on_variance") = true);
}

}  // namespace reprsim::bind
