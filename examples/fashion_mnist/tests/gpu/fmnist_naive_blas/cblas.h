#pragma once
// The two CBLAS calls of examples/fashion_mnist/mlp.hpp (cblas_sgemm, cblas_dgemm) as plain loops,
// for building the Fashion-MNIST GPU tests where OpenBLAS is not installed (a bare GPU image):
// there the host MLP these tests compare against runs on these loops instead. Test use only.

#include <cstddef>

enum CBLAS_ORDER { CblasRowMajor = 101, CblasColMajor = 102 };
enum CBLAS_TRANSPOSE { CblasNoTrans = 111, CblasTrans = 112 };

namespace fmnist_naive_blas {

// C = alpha op(A) op(B) + beta C (beta == 0 overwrites C, as BLAS does), with element (i, j) of a
// matrix at i * ld + j (row-major) or j * ld + i (column-major).
template <class T>
void gemm(CBLAS_ORDER order, CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int m, int n, int k, T alpha, const T* a, int lda,
          const T* b, int ldb, T beta, T* c, int ldc) {
  const bool row = order == CblasRowMajor;
  const auto at = [row](const T* p, int ld, bool trans, int i, int j) {
    if (trans) {
      const int t = i;
      i = j;
      j = t;
    }
    return row ? p[std::size_t(i) * std::size_t(ld) + std::size_t(j)] : p[std::size_t(j) * std::size_t(ld) + std::size_t(i)];
  };
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < n; ++j) {
      T s = T(0);
      for (int l = 0; l < k; ++l) s += at(a, lda, ta == CblasTrans, i, l) * at(b, ldb, tb == CblasTrans, l, j);
      T& cij = row ? c[std::size_t(i) * std::size_t(ldc) + std::size_t(j)] : c[std::size_t(j) * std::size_t(ldc) + std::size_t(i)];
      cij = alpha * s + (beta == T(0) ? T(0) : beta * cij);
    }
}

}  // namespace fmnist_naive_blas

inline void cblas_sgemm(CBLAS_ORDER order, CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int m, int n, int k, float alpha,
                        const float* a, int lda, const float* b, int ldb, float beta, float* c, int ldc) {
  fmnist_naive_blas::gemm(order, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
inline void cblas_dgemm(CBLAS_ORDER order, CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int m, int n, int k, double alpha,
                        const double* a, int lda, const double* b, int ldb, double beta, double* c, int ldc) {
  fmnist_naive_blas::gemm(order, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
