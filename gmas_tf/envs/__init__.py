from gmas_tf.envs.maze import MazeEnvironment
