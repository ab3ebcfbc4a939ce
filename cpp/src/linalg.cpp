#include "reprsim/linalg.hpp"

#include "reprsim/blas.hpp"

namespace reprsim {

SVDResult svd(MatD a, bool vectors) {
    const Index m = a.rows(), n = a.cols(), r = std::min(m, n);
    SVDResult out;
    out.s.resize(r);
    if (vectors) {
        out.u.resize(m, r);
        out.vt.resize(r, n);
    }
    if (r == 0) return out;
    blas::gesdd(m, n, a.data(), m, out.s.data(), vectors ? out.u.data() : nullptr,
                vectors ? out.vt.data() : nullptr, vectors);
    return out;
}

}  // namespace reprsim
