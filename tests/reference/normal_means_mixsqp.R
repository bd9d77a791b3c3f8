# R mixsqp's NPMLE of the normal-means prior on a fixed grid (the reference of
# tests/test_empirical_bayes.py). Made with:
#   Rscript tests/reference/normal_means_mixsqp.R
# (R 4.x, mixsqp 0.3.48 from the Debian package r-cran-mixsqp), from the
# repository root; writes tests/reference/normal_means_mixsqp.json. The controls
# make mixsqp solve to its limit: no low-rank approximation of L (tol.svd = 0),
# no eps added to L p (with eps = 1e-12 it stopped 1.4e-5 short, max d = 1.0001),
# and no thresholding of small weights.
library(mixsqp)
d <- read.csv("tests/data/normal_means.csv")
grid <- seq(min(d$x), max(d$x), length.out = 101)
L <- outer(seq_along(d$x), seq_along(grid),
           function(i, k) dnorm(d$x[i], grid[k], d$se[i]))
fit <- mixsqp(L, control = list(verbose = FALSE, convtol.sqp = 1e-10, tol.svd = 0,
                                 eps = 0, convtol.activeset = 1e-14,
                                 maxiter.activeset = 1000,
                                 zero.threshold.searchdir = 1e-16,
                                 zero.threshold.solution = 0, maxiter.sqp = 1000))
# mixsqp's objective is -sum_i log(L p)_i / n (no row scaling): the mean
# log-likelihood is its negative.
mean_loglik <- mean(log(drop(L %*% fit$x)))
max_d <- max(colMeans(L / drop(L %*% fit$x)))
out <- sprintf('{"grid_lower": %.17g, "grid_upper": %.17g, "grid_size": %d, "mean_loglik": %.17g, "max_d": %.17g, "status": "%s", "probs": [%s]}',
               min(d$x), max(d$x), length(grid), mean_loglik, max_d, fit$status,
               paste(sprintf("%.17g", fit$x), collapse = ", "))
writeLines(out, "tests/reference/normal_means_mixsqp.json")
