# R reference for likelihood-ratio (profile) intervals, `conf_int(kind="profile")`
# (tests/test_profile_intervals.py).
#
# Made with, from the repository root:
#
#     Rscript tests/reference/profile_glm.R
#
# It simulates a small Poisson regression with two correlated covariates
# (set.seed below), writes it to tests/reference/profile_glm.csv, and writes
# tests/reference/profile_glm.json with:
#   * the glm fit (intercept, x1, x2): coefficients, standard errors, logLik;
#   * `confint(fit)`, MASS's profile-likelihood intervals (it profiles the
#     deviance on a few points and interpolates them by a spline);
#   * the same intervals solved exactly: for each coefficient, the two roots of
#     2 (logLik - profile logLik) = qchisq(0.95, 1), the profile refitting the
#     other coefficients with the fixed one as an offset, by uniroot to 1e-12.
# The tests only read the JSON: CI has no R.

suppressPackageStartupMessages({
  library(MASS)
  library(jsonlite)
})

set.seed(20261207)
n <- 40
x1 <- round(rnorm(n), 6)
x2 <- round(0.6 * x1 + 0.8 * rnorm(n), 6)
counts <- rpois(n, exp(0.4 + 0.5 * x1 - 0.3 * x2))
data <- data.frame(x1, x2, counts)
write.csv(data, "tests/reference/profile_glm.csv", row.names = FALSE)

control <- glm.control(epsilon = 1e-14, maxit = 100)
fit <- glm(counts ~ x1 + x2, family = poisson, data = data, control = control)
X <- model.matrix(fit)
cutoff <- as.numeric(logLik(fit)) - qchisq(0.95, 1) / 2

profile_loglik <- function(j, value) {
  others <- X[, -j, drop = FALSE]
  refit <- glm.fit(others, counts, family = poisson(), offset = value * X[, j],
                   control = control)
  sum(dpois(counts, refit$fitted.values, log = TRUE))
}

exact_interval <- function(j) {
  est <- unname(coef(fit)[j])
  se <- unname(sqrt(diag(vcov(fit)))[j])
  f <- function(value) profile_loglik(j, value) - cutoff
  c(
    uniroot(f, c(est - 6 * se, est), tol = 1e-12)$root,
    uniroot(f, c(est, est + 6 * se), tol = 1e-12)$root
  )
}

profile_ci <- suppressMessages(confint(fit, level = 0.95))
exact <- t(sapply(seq_len(ncol(X)), exact_interval))
out <- list(
  command = "Rscript tests/reference/profile_glm.R",
  r_version = R.version.string,
  mass_version = as.character(packageVersion("MASS")),
  names = colnames(X),
  coef = unname(coef(fit)),
  se = unname(sqrt(diag(vcov(fit)))),
  loglik = as.numeric(logLik(fit)),
  confint_lower = unname(profile_ci[, 1]),
  confint_upper = unname(profile_ci[, 2]),
  exact_lower = exact[, 1],
  exact_upper = exact[, 2]
)
write_json(out, "tests/reference/profile_glm.json", digits = NA, auto_unbox = TRUE,
           pretty = TRUE)
