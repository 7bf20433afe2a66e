"""An exact analytic teacher: data ~ N(mu, sigma^2 I). Its denoiser and PF-ODE flow are closed-form."""

import torch


class GaussianTeacher(torch.nn.Module):
    """D(z, t) = mu + sigma^2 / (sigma^2 + t^2) (z - mu); exact jump G(z, t, s) = mu + r (z - mu),
    r = sqrt((sigma^2 + s^2) / (sigma^2 + t^2))."""

    def __init__(self, mu: float, sigma: float):
        super().__init__()
        self.mu, self.sigma = float(mu), float(sigma)

    def forward(self, z, t, cond=None):
        t = torch.as_tensor(t, dtype=z.dtype).reshape(-1, *([1] * (z.ndim - 1)))
        return self.mu + self.sigma ** 2 / (self.sigma ** 2 + t ** 2) * (z - self.mu)

    def jump(self, z, t, s):
        t = torch.as_tensor(t, dtype=z.dtype).reshape(-1, *([1] * (z.ndim - 1)))
        s = torch.as_tensor(s, dtype=z.dtype).reshape(-1, *([1] * (z.ndim - 1)))
        r = torch.sqrt((self.sigma ** 2 + s ** 2) / (self.sigma ** 2 + t ** 2))
        return self.mu + r * (z - self.mu)


class ExactFlowStudent(torch.nn.Module):
    """A student whose jump is the exact PF-ODE flow of the Gaussian teacher (ignores cond, omega)."""

    def __init__(self, teacher: GaussianTeacher):
        super().__init__()
        self.teacher = teacher

    def forward(self, z, t, s, cond=None, omega=None):
        b = z.shape[0]
        return self.teacher.jump(z, torch.as_tensor(t).expand(b), torch.as_tensor(s).expand(b))


class CondGaussianTeacher(torch.nn.Module):
    """Data N(mu(c), std^2), mu(c) = c[:, 0, 0]: D(z, t, c) = mu + std^2 / (std^2 + t^2) (z - mu). CFG with
    omega is again such a denoiser, with mean mu_omega = omega mu(c) + (1 - omega) mu(empty)."""

    def __init__(self, std: float = 0.5):
        super().__init__()
        self.std = std

    def forward(self, z, t, cond):
        mu = cond[:, 0, 0].reshape(-1, 1, 1).to(z.dtype)
        t = t.reshape(-1, 1, 1)
        return mu + self.std ** 2 / (self.std ** 2 + t ** 2) * (z - mu)
