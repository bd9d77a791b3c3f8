# R reference for PanelLogit and WeibullHazard at a one-point (and a normal) F.
#
# Made with (from the repository root; R 4.x with survival, lme4, jsonlite):
#
#     Rscript tests/reference/panels_glm.R
#
# It writes tests/reference/panels_glm.json. The data are tests/data/panel_logit.csv
# and tests/data/weibull_hazard.csv; when a CSV is missing the script first draws
# it with the fixed seeds below and writes it (the CSVs in the repository were
# made that way), then fits what it reads back, so that R and the spmle tests see
# the same rounded numbers. The tests never call R: they read the JSON.
#
# What it fits:
#   panel_glm    glm(y ~ x1 + x2, binomial) on the long panel: PanelLogit with a
#                one-point F (the intercept), unbalanced panel = the mask.
#   panel_glmer  glmer(y ~ x1 + x2 + (1 | unit), binomial, nAGQ = 25): PanelLogit
#                with a normal F, N(intercept, sigma^2).
#   weibull      survreg(Surv(t, d) ~ x1 + x2, dist = "weibull"): WeibullHazard
#                with a one-point F. survreg's log T = mu + x'gamma + scale * W
#                maps to alpha = 1 / scale, beta = -gamma / scale, intercept =
#                -mu / scale, log_shape = -log(scale); the standard errors of
#                (intercept, log_shape, beta) are the delta method on vcov(fit),
#                exact for the inverse observed information at the MLE.

suppressPackageStartupMessages({
  library(survival)
  library(lme4)
  library(jsonlite)
})

panel_csv <- "tests/data/panel_logit.csv"
weibull_csv <- "tests/data/weibull_hazard.csv"
out_json <- "tests/reference/panels_glm.json"

if (!file.exists(panel_csv)) {
  set.seed(20261122)
  n <- 150
  periods <- 5
  long <- expand.grid(time = seq_len(periods), unit = seq_len(n))
  long$unit <- sprintf("u%03d", long$unit)
  effect <- rnorm(n, 0, 1)[match(long$unit, unique(long$unit))]
  long$x1 <- round(rnorm(nrow(long)), 6)
  long$x2 <- rbinom(nrow(long), 1, 0.5)
  eta <- -0.3 + 0.8 * long$x1 - 0.6 * long$x2 + effect
  long$y <- rbinom(nrow(long), 1, plogis(eta))
  # An unbalanced panel: drop 15% of the rows, but not a unit's first period.
  keep <- long$time == 1 | runif(nrow(long)) > 0.15
  long <- long[keep, c("unit", "time", "y", "x1", "x2")]
  write.csv(long, panel_csv, row.names = FALSE)
}

if (!file.exists(weibull_csv)) {
  set.seed(20261123)
  n <- 200
  x1 <- round(rnorm(n), 6)
  x2 <- rbinom(n, 1, 0.5)
  alpha <- 1.5
  failure <- (rexp(n) * exp(-(-0.5 + 0.7 * x1 - 0.4 * x2)))^(1 / alpha)
  censor <- runif(n, 0, 3)
  t <- round(pmin(failure, censor), 8)
  d <- as.integer(failure <= censor)
  write.csv(data.frame(t = t, d = d, x1 = x1, x2 = x2), weibull_csv,
            row.names = FALSE)
}

panel <- read.csv(panel_csv)
logit <- glm(y ~ x1 + x2, family = binomial, data = panel,
             control = glm.control(epsilon = 1e-14, maxit = 100))
mixed <- glmer(y ~ x1 + x2 + (1 | unit), family = binomial, data = panel,
               nAGQ = 25,
               control = glmerControl(optimizer = "bobyqa",
                                      optCtrl = list(rhobeg = 0.2, rhoend = 1e-10,
                                                     maxfun = 1e5)))

surv <- read.csv(weibull_csv)
weib <- survreg(Surv(t, d) ~ x1 + x2, data = surv, dist = "weibull",
                control = survreg.control(rel.tolerance = 1e-13, maxiter = 100))
scale <- weib$scale
gamma <- coef(weib)
# (mu, gamma_1, gamma_2, log scale) -> (intercept, beta_1, beta_2, log_shape)
estimate <- c(-gamma / scale, -log(scale))
jacobian <- rbind(
  c(-1 / scale, 0, 0, gamma[1] / scale),
  c(0, -1 / scale, 0, gamma[2] / scale),
  c(0, 0, -1 / scale, gamma[3] / scale),
  c(0, 0, 0, -1)
)
mapped_se <- sqrt(diag(jacobian %*% vcov(weib) %*% t(jacobian)))

result <- list(
  command = "Rscript tests/reference/panels_glm.R",
  r_version = R.version.string,
  survival_version = as.character(packageVersion("survival")),
  lme4_version = as.character(packageVersion("lme4")),
  panel_glm = list(
    coef = as.list(coef(logit)),
    se = as.list(sqrt(diag(vcov(logit)))),
    loglik = as.numeric(logLik(logit)),
    nobs = nrow(panel)
  ),
  panel_glmer = list(
    coef = as.list(fixef(mixed)),
    sigma = as.numeric(getME(mixed, "theta")),
    loglik = as.numeric(logLik(mixed)),
    nAGQ = 25
  ),
  weibull = list(
    survreg_coef = as.list(gamma),
    survreg_scale = scale,
    intercept = unname(estimate[1]),
    log_shape = unname(estimate[4]),
    beta = unname(estimate[2:3]),
    se_intercept = mapped_se[1],
    se_log_shape = mapped_se[4],
    se_beta = mapped_se[2:3],
    loglik = as.numeric(logLik(weib))
  )
)
writeLines(toJSON(result, digits = NA, auto_unbox = TRUE, pretty = TRUE), out_json)
