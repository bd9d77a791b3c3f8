# R reference for spmle's PoissonMixture and BinomialMixture (tests/test_models_counts.py).
#
# Made with, from the repository root:
#
#     Rscript tests/reference/counts_glm.R
#
# It simulates a small fixed data set (set.seed below), writes it to
# tests/data/counts_glm.csv, and writes tests/reference/counts_glm.json with:
#   * glm fits, which are the ready models at a one-point F (the point is the
#     intercept): Poisson with offset log(exposure), binomial with cbind();
#     coefficients, standard errors and logLik;
#   * glmer fits with an observation-level random intercept (the latent v_i is one
#     per unit), i.e. the ready models with a normal F, by adaptive Gauss-Hermite
#     quadrature with nAGQ = 25; fixed effects, the random-intercept SD, logLik
#     and the saturated log-likelihood that lme4 leaves out of it.
# The tests only read the JSON: CI has no R.

suppressPackageStartupMessages({
  library(MASS)
  library(lme4)
  library(jsonlite)
})

set.seed(20261122)
n <- 200
x <- round(rnorm(n), 6)
exposure <- round(runif(n, 0.5, 2), 6)
v_pois <- rnorm(n, 0, 0.5)
counts <- rpois(n, exposure * exp(0.3 + 0.5 * x + v_pois))
trials <- sample(1:15, n, replace = TRUE)
v_binom <- rnorm(n, 0, 0.7)
successes <- rbinom(n, trials, plogis(-0.4 + 0.8 * x + v_binom))
unit <- factor(seq_len(n))
data <- data.frame(x, exposure, counts, trials, successes)
write.csv(data, "tests/data/counts_glm.csv", row.names = FALSE)

glm_summary <- function(fit) {
  list(
    coef = unname(coef(fit)),
    se = unname(sqrt(diag(vcov(fit)))),
    loglik = as.numeric(logLik(fit))
  )
}

# For nAGQ > 1, lme4's logLik is the marginal log-likelihood less that of the
# saturated model (it sums deviance residuals): saturated_loglik adds it back.
glmer_summary <- function(fit, saturated) {
  list(
    coef = unname(fixef(fit)),
    sd = unname(attr(VarCorr(fit)$unit, "stddev")),
    loglik = as.numeric(logLik(fit)),
    saturated_loglik = saturated
  )
}

control <- glmerControl(
  check.nobs.vs.nlev = "ignore", check.nobs.vs.nRE = "ignore",
  optimizer = "bobyqa", optCtrl = list(maxfun = 1e5)
)
out <- list(
  command = "Rscript tests/reference/counts_glm.R",
  r_version = R.version.string,
  lme4_version = as.character(packageVersion("lme4")),
  poisson_glm = glm_summary(
    glm(counts ~ x + offset(log(exposure)), family = poisson, data = data,
        control = glm.control(epsilon = 1e-14, maxit = 100))
  ),
  binomial_glm = glm_summary(
    glm(cbind(successes, trials - successes) ~ x, family = binomial, data = data,
        control = glm.control(epsilon = 1e-14, maxit = 100))
  ),
  poisson_glmer = glmer_summary(
    glmer(counts ~ x + offset(log(exposure)) + (1 | unit), family = poisson,
          data = data, nAGQ = 25, control = control),
    sum(dpois(counts, counts, log = TRUE))
  ),
  binomial_glmer = glmer_summary(
    glmer(cbind(successes, trials - successes) ~ x + (1 | unit),
          family = binomial, data = data, nAGQ = 25, control = control),
    sum(dbinom(successes, trials, successes / trials, log = TRUE))
  ),
  nagq = 25
)
write_json(out, "tests/reference/counts_glm.json", digits = NA, auto_unbox = TRUE,
           pretty = TRUE)
